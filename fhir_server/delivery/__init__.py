"""Delivery to other parties from a persistent outbox (docs/delivery.md): the queue
(``queue.py``) written in the write path's transaction, the loop its senders share
(``loop.py``), the SAS push (``sas.py``, ``sender.py``) and the purge (``retention.py``)."""
