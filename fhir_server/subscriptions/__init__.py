"""FHIR R4 Subscriptions: criteria checked at creation (``rules``), matched on every write
(``matcher``), notified through the delivery queue by a rest-hook sender (``sender``), its
error state counted per Subscription (``failures``) and lifted by the client (``resume``).
docs/subscriptions.md."""
