"""The words of the generated traffic: intents with their summaries, topics, names, campaigns.

Prose data, kept apart from the plan's logic (cli/traffic.py) that draws from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Intent:
    name: str
    summary: str
    checklist: tuple[str, ...]
    extracted: tuple[str, ...]


# A bounded, realistic set: the intents an appointment/support/sales voice agent reports.
INTENTS = (
    Intent(
        "book_appointment",
        "The customer called to book an appointment for {topic}. The agent checked availability, "
        "offered two slots and the customer accepted the {slot} slot. The agent confirmed the "
        "booking, repeated the date and time, and said a confirmation message would follow by SMS. "
        "The customer asked whether they needed to bring any documents and the agent listed them.",
        ("Verified customer identity", "Offered available slots", "Confirmed date and time"),
        ("customerName", "preferredDate", "appointmentType"),
    ),
    Intent(
        "reschedule_appointment",
        "The customer wanted to move an existing appointment for {topic} because of a conflict. "
        "The agent found the booking, proposed new times and moved it to the {slot} slot. The "
        "customer asked whether the change would cost anything; the agent explained that changes "
        "made more than 24 hours ahead are free and confirmed the new time.",
        ("Located existing booking", "Offered alternatives", "Confirmed new time"),
        ("customerName", "previousDate", "preferredDate"),
    ),
    Intent(
        "cancel_appointment",
        "The customer asked to cancel an appointment for {topic}. The agent confirmed the booking "
        "details, asked for the reason and offered to reschedule instead, which the customer "
        "declined. The agent cancelled the appointment and explained that a cancellation e-mail "
        "would be sent within a few minutes.",
        ("Located existing booking", "Offered to reschedule", "Confirmed cancellation"),
        ("customerName", "cancellationReason"),
    ),
    Intent(
        "billing_question",
        "The customer had a question about an invoice related to {topic}. They believed they had "
        "been charged twice this month. The agent reviewed the account, explained that one line "
        "was a pro-rated adjustment after a plan change and the other the regular monthly fee, and "
        "offered to send an itemised invoice. The customer accepted the explanation.",
        ("Verified customer identity", "Explained charges", "Offered itemised invoice"),
        ("customerName", "invoiceNumber", "disputedAmount"),
    ),
    Intent(
        "payment_issue",
        "The customer reported that a payment for {topic} had failed. The agent checked the "
        "payment history, saw that the card on file had expired and guided the customer through "
        "updating it. The agent retried the payment, which went through, and confirmed the "
        "account was back in good standing.",
        ("Verified customer identity", "Identified failure cause", "Confirmed successful payment"),
        ("customerName", "paymentMethod", "amount"),
    ),
    Intent(
        "order_status",
        "The customer wanted to know where their order for {topic} was. The agent looked up the "
        "order, said it had left the warehouse and gave the carrier's estimated delivery window "
        "of the {slot}. The customer asked for the tracking link and the agent sent it by SMS "
        "during the call.",
        ("Located order", "Provided delivery estimate", "Shared tracking link"),
        ("customerName", "orderNumber", "deliveryWindow"),
    ),
    Intent(
        "technical_support",
        "The customer reported a problem with {topic}: it stopped working after an update. The "
        "agent walked through a restart and a settings reset, but the problem persisted. The "
        "agent opened a support ticket, described the steps already tried and told the customer "
        "that a technician would call back within one business day.",
        ("Collected problem description", "Tried standard troubleshooting", "Opened ticket"),
        ("customerName", "deviceModel", "ticketNumber"),
    ),
    Intent(
        "account_access",
        "The customer could not log in to their account for {topic}. The agent verified the "
        "customer's identity with two security questions, triggered a password reset link and "
        "stayed on the line until the customer confirmed they could sign in again.",
        ("Verified customer identity", "Sent reset link", "Confirmed access restored"),
        ("customerName", "accountEmail"),
    ),
    Intent(
        "product_information",
        "The customer asked for details about {topic}: pricing, contract length and whether it "
        "could be combined with their current plan. The agent explained the options, compared "
        "the two most relevant plans and offered to e-mail a summary. The customer said they "
        "would think about it and might call back.",
        ("Identified customer need", "Explained pricing", "Offered written summary"),
        ("customerName", "productOfInterest", "budget"),
    ),
    Intent(
        "complaint",
        "The customer called to complain about {topic}. They were frustrated that an earlier "
        "promise had not been kept. The agent apologised, recorded the complaint in detail and "
        "escalated it to a supervisor, promising a reply within 48 hours. The customer remained "
        "unhappy but accepted the escalation.",
        ("Acknowledged the issue", "Recorded complaint details", "Escalated to supervisor"),
        ("customerName", "complaintCategory", "escalationId"),
    ),
    Intent(
        "sales_inquiry",
        "The agent called the customer about {topic} as part of an outbound campaign. The "
        "customer was interested, asked about the installation timeline and the first-month "
        "discount, and agreed to a follow-up call with a sales representative on the {slot}.",
        ("Introduced the offer", "Answered questions", "Scheduled follow-up"),
        ("customerName", "interestLevel", "followUpDate"),
    ),
    Intent(
        "callback_request",
        "The customer asked to be called back about {topic} because they could not talk at "
        "length right now. The agent captured the best number and time window, the {slot}, and "
        "confirmed that a specialist would call then.",
        ("Captured callback number", "Agreed on time window"),
        ("customerName", "callbackWindow"),
    ),
)
TOPICS = (
    "a dental check-up",
    "the broadband contract",
    "a home insurance policy",
    "a car service",
    "the mobile phone plan",
    "a physiotherapy session",
    "the heat pump installation",
    "an online order of running shoes",
    "the solar panel quote",
    "a hotel booking",
)
SLOTS = (
    "Monday morning",
    "Tuesday afternoon",
    "Wednesday at 10:30",
    "Thursday evening",
    "Friday at 14:00",
    "next week",
)
NAMES = (
    "Anna Schmidt",
    "James Carter",
    "Sofia Rossi",
    "Lucas Martin",
    "Emma de Vries",
    "Noah Fischer",
    "Mia Dubois",
    "Liam O'Brien",
    "Olivia Garcia",
    "Mateo Lopez",
)
LANGUAGES = ("en", "en", "en", "de", "fr", "es", "nl", "it")
COUNTRY_CODES = ("+1", "+44", "+49", "+33", "+34", "+31", "+39")
CAMPAIGNS = ("cmp_spring_renewals", "cmp_winback_q3", "cmp_onboarding", "cmp_upsell_fiber")
RESOLUTION_SENTIMENT = {
    "RESOLVED": ("POSITIVE", 0.35, 0.95),
    "PARTIALLY_RESOLVED": ("NEUTRAL", -0.2, 0.3),
    "UNRESOLVED": ("NEGATIVE", -0.95, -0.3),
    "NOT_APPLICABLE": ("NEUTRAL", -0.1, 0.2),
}
