"""Delivery to other parties from a persistent outbox (docs/delivery.md): the queue
(``queue.py``) written in the write path's transaction, and its senders."""
