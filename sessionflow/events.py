"""The event types the Agntix contract names (two delivered today, five planned)."""

from typing import Final

SESSION_CREATED: Final = "session.created"
SESSION_ENDED: Final = "session.ended"
SESSION_UPDATED: Final = "session.updated"
MESSAGE_ADDED: Final = "message.added"
USAGE_UPDATED: Final = "usage.updated"
SUBSCRIPTION_UPDATED: Final = "subscription.updated"
KNOWLEDGE_STORE_UPDATED: Final = "knowledge_store.updated"

# Named by the platform's page, not delivered yet: stored raw and counted, never paired.
PLANNED_EVENT_TYPES: Final = (
    SESSION_UPDATED,
    MESSAGE_ADDED,
    USAGE_UPDATED,
    SUBSCRIPTION_UPDATED,
    KNOWLEDGE_STORE_UPDATED,
)
# Metric labels use these names; any other event type counts as "other", so series stay bounded.
KNOWN_EVENT_TYPES: Final = frozenset({SESSION_CREATED, SESSION_ENDED, *PLANNED_EVENT_TYPES})
