"""The installed package: its generated gRPC stubs and its dispatcher.

The stubs must import as ``qroute.v1.*`` and describe every service, RPC,
message, field and enum that API.md names (the public contract). With
``QROUTE_REQUIRE_EXTENSIONS=1`` the compiled dispatcher must be the one in
use, so a build that silently fell back to the reference cannot pass; with
``QROUTE_NO_EXTENSIONS=1`` the reference must be.
"""

import importlib
import importlib.util
import os
import re

import pytest

PROTO_MODULES = [
    "common", "queue", "recipient", "session", "event",
    "report", "callback", "webhook", "account",
]

# service -> (module, {rpc: (client_streaming, server_streaming)})
UNARY = (False, False)
SERVICES = {
    "QueueService": ("queue", {
        "CreateQueue": UNARY, "GetQueue": UNARY, "UpdateQueue": UNARY,
        "DeleteQueue": UNARY, "ListQueues": UNARY, "GetQueueStatus": UNARY,
        "BatchGetQueueStatus": UNARY, "WatchQueueStatus": (False, True),
        "AddMembers": UNARY, "RemoveMembers": UNARY, "ListMembers": UNARY,
    }),
    "RecipientService": ("recipient", {
        "CreateRecipient": UNARY, "GetRecipient": UNARY, "UpdateRecipient": UNARY,
        "DeleteRecipient": UNARY, "ListRecipients": UNARY,
        "Login": UNARY, "Logout": UNARY, "SetAvailability": UNARY,
        "GetRecipientStatus": UNARY, "Connect": (True, True),
        "ExecuteAction": UNARY,
        "SetSupervisedRecipients": UNARY, "GetSupervisedRecipients": UNARY,
        "AddSupervisedRecipients": UNARY, "RemoveSupervisedRecipients": UNARY,
        "ReportDeviceState": UNARY, "GetRecipientQueues": UNARY,
        "ListJoinableQueues": UNARY, "SetRecipientQueues": UNARY,
    }),
    "SessionService": ("session", {
        "Enqueue": UNARY, "EnqueueStream": (True, True), "Abandon": UNARY,
        "Hangup": UNARY, "Transfer": UNARY, "GetSession": UNARY,
        "ListSessions": UNARY,
    }),
    "EventService": ("event", {"Subscribe": (False, True)}),
    "ReportService": ("report", {"RunReport": UNARY}),
    "CallbackService": ("callback", {
        "LineUpCaller": UNARY, "VerifyCaller": UNARY, "GetCaller": UNARY,
        "NotifyCallerConnected": UNARY, "NotifyCallerTransferred": UNARY,
        "UpdateCallerInformation": UNARY, "ListCallersWaiting": UNARY,
    }),
    "WebhookService": ("webhook", {
        "CreateWebhook": UNARY, "GetWebhook": UNARY, "UpdateWebhook": UNARY,
        "DeleteWebhook": UNARY, "ListWebhooks": UNARY,
    }),
    "AccountService": ("account", {
        "CreateAccount": UNARY, "GetAccount": UNARY, "ListAccounts": UNARY,
        "CreateApiKey": UNARY, "RevokeApiKey": UNARY,
    }),
}

# message -> (module, fields API.md names for it)
MESSAGES = {
    "Queue": ("queue", [
        "id", "name", "router", "agent_wrapup_time", "force_away_on_reject",
        "hold_treatment", "ring_timeout", "tick_time", "timeout",
        "timeout_if_size_exceeds", "timeout_immediately_if_empty",
        "timeout_redirect", "tier_expansion", "create_time", "update_time",
    ]),
    "CreateQueueRequest": ("queue", ["queue", "request_id"]),
    "GetQueueRequest": ("queue", ["queue_id"]),
    "UpdateQueueRequest": ("queue", ["queue", "update_mask"]),
    "DeleteQueueRequest": ("queue", ["queue_id"]),
    "ListQueuesRequest": ("queue", ["page_size", "page_token"]),
    "ListQueuesResponse": ("queue", ["queues", "next_page_token"]),
    "GetQueueStatusRequest": ("queue", ["queue_id"]),
    "QueueStatus": ("queue", [
        "queue_id", "active_recipient_count", "available_recipient_count", "stats", "node",
    ]),
    "QueueStats": ("queue", [
        "estimated_wait", "average_wait", "recipient_count", "active_session_count",
        "total_sessions", "missed_sessions", "abandoned_sessions",
    ]),
    "BatchGetQueueStatusRequest": ("queue", ["queue_ids"]),
    "BatchGetQueueStatusResponse": ("queue", ["statuses"]),
    "WatchQueueStatusRequest": ("queue", ["queue_ids", "interval_ms"]),
    "AddMembersRequest": ("queue", ["queue_id", "members"]),
    "AddMembersResponse": ("queue", ["members"]),
    "RemoveMembersRequest": ("queue", ["queue_id", "recipient_ids"]),
    "ListMembersRequest": ("queue", ["queue_id"]),
    "ListMembersResponse": ("queue", ["members"]),
    "Member": ("common", ["recipient_id", "tier", "weight"]),
    "TierExpansion": ("common", ["after_seconds", "max_tier"]),
    "Caller": ("common", ["number", "name"]),
    "Recipient": ("recipient", [
        "id", "name", "skills", "agent_type", "extension_name", "agent_number",
        "caller_ids", "pincode", "guard_timer_seconds", "bounced_call_limit",
        "force_away_on_dnd", "unavailable_codes", "use_default_guard_timer",
        "use_default_unavailable_settings", "make_outgoing_calls_as_call_center",
        "outgoing_call_dnis", "threshold_profile",
    ]),
    "CreateRecipientRequest": ("recipient", ["recipient", "request_id"]),
    "GetRecipientRequest": ("recipient", ["recipient_id"]),
    "UpdateRecipientRequest": ("recipient", ["recipient", "update_mask"]),
    "DeleteRecipientRequest": ("recipient", ["recipient_id"]),
    "ListRecipientsRequest": ("recipient", ["page_size", "page_token"]),
    "ListRecipientsResponse": ("recipient", ["recipients", "next_page_token"]),
    "RecipientStatus": ("recipient", [
        "recipient_id", "state", "unavailable_code", "current_session_id",
        "idle_since", "calls_taken", "consecutive_misses",
    ]),
    "LoginRequest": ("recipient", ["recipient_id", "source", "ready"]),
    "LogoutRequest": ("recipient", ["recipient_id", "source"]),
    "SetAvailabilityRequest": ("recipient", [
        "recipient_id", "availability", "queue_id", "unavailable_code", "source",
    ]),
    "GetRecipientStatusRequest": ("recipient", ["recipient_id"]),
    "AgentCommand": ("recipient", [
        "command_id", "hello", "accept", "reject", "hangup", "finish_wrapup", "set_availability",
    ]),
    "AgentEvent": ("recipient", [
        "correlation", "offer", "offer_cancelled", "state_changed", "error",
    ]),
    "ExecuteActionRequest": ("recipient", [
        "link_method", "caller_number", "pin", "action", "target_queue",
    ]),
    "ExecuteActionResponse": ("recipient", ["ok", "recipient_id", "media_id"]),
    "ReportDeviceStateRequest": ("recipient", ["recipient_id", "dnd", "personal_call", "reachable"]),
    "GetRecipientQueuesRequest": ("recipient", ["recipient_id"]),
    "GetRecipientQueuesResponse": ("recipient", ["queues"]),
    "RecipientQueue": ("recipient", ["queue_id", "name", "available", "tier", "log_off_allowed"]),
    "SetRecipientQueuesRequest": ("recipient", ["recipient_id", "queue_ids"]),
    "Session": ("session", [
        "id", "queue_id", "state", "end_reason", "caller", "priority", "skills",
        "properties", "entered_at", "recipient_id", "wait_ms", "ring_ms", "talk_ms",
        "queues_visited", "position", "estimated_wait",
    ]),
    "EnqueueRequest": ("session", [
        "queue_id", "caller", "priority", "skills", "properties", "request_id",
    ]),
    "AbandonRequest": ("session", ["session_id"]),
    "HangupRequest": ("session", ["session_id"]),
    "TransferRequest": ("session", ["session_id", "queue_id"]),
    "GetSessionRequest": ("session", ["session_id"]),
    "ListSessionsRequest": ("session", ["queue_id", "states", "page_size", "page_token"]),
    "ListSessionsResponse": ("session", ["sessions", "next_page_token"]),
    "SubscribeRequest": ("event", [
        "from_sequence", "entities", "types", "queue_ids", "recipient_ids",
        "session_ids", "max_batch",
    ]),
    "EventBatch": ("event", ["events"]),
    "Event": ("event", [
        "sequence", "time", "entity", "entity_id", "type", "account_id",
        "queue_id", "recipient_id", "session_id", "session", "queue", "recipient",
    ]),
    "RunReportRequest": ("report", [
        "report", "start_date", "end_date", "period", "metrics", "identifiers",
        "queue_ids", "format",
    ]),
    "RunReportResponse": ("report", ["execution_times", "reports", "csv"]),
    "ExecutionTimes": ("report", ["load_ms", "filter_ms", "render_ms"]),
    "EntityReport": ("report", ["id", "data"]),
    "Series": ("report", ["points"]),
    "LineUpCallerRequest": ("callback", [
        "line_id", "phone", "channel", "source", "lang", "skills", "properties",
    ]),
    "CallerKey": ("callback", ["line_id", "phone"]),
    "VerifyCallerResponse": ("callback", ["up", "caller"]),
    "NotifyCallerTransferredRequest": ("callback", [
        "line_id", "phone", "wait_time_when_up", "agent_id",
    ]),
    "ListCallersWaitingRequest": ("callback", ["line_id"]),
    "ListCallersWaitingResponse": ("callback", ["callers"]),
    "CallbackCaller": ("callback", ["line_id", "phone", "channel", "state", "ewt"]),
    "Webhook": ("webhook", ["id", "recipient_id", "event_type", "url", "method", "secret"]),
    "CreateWebhookRequest": ("webhook", ["webhook", "request_id"]),
    "UpdateWebhookRequest": ("webhook", ["webhook", "update_mask"]),
    "ListWebhooksResponse": ("webhook", ["webhooks", "next_page_token"]),
    "AgentEventData": ("webhook", [
        "agent_id", "agent_status", "agent_type", "agent_number", "extension_name",
        "event_source",
    ]),
    "CreateAccountRequest": ("account", ["name", "time_zone"]),
    "Account": ("account", ["id", "name", "time_zone"]),
    "ListAccountsResponse": ("account", ["accounts", "next_page_token"]),
    "CreateApiKeyRequest": ("account", ["account_id", "description"]),
    "ApiKey": ("account", ["id", "account_id", "description", "secret"]),
    "RevokeApiKeyRequest": ("account", ["api_key_id"]),
}

# enum -> (module, values API.md names, without the prefix)
ENUMS = {
    "Router": ("common", [
        "ROUND_ROBIN", "MOST_IDLE", "LEAST_CALLS", "LEAST_OFFERS", "LEAST_TALK_TIME",
        "LINEAR", "RANDOM", "MOST_SKILLED", "RING_ALL",
    ]),
    "RecipientState": ("common", ["LOGGED_OUT", "READY", "AWAY", "RINGING", "BUSY", "WRAPUP"]),
    "SessionState": ("common", ["WAITING", "OFFERING", "CONNECTED", "ENDED"]),
    "EndReason": ("common", [
        "COMPLETED", "ABANDONED", "TIMED_OUT", "REJECTED_FULL", "REJECTED_EMPTY",
        "TRANSFERRED", "REMOVED",
    ]),
    "Availability": ("common", ["READY", "AWAY"]),
    "AgentType": ("common", ["LOCAL", "REMOTE"]),
    "EventSource": ("common", ["API", "PHONE"]),
    "HttpMethod": ("common", ["GET", "POST"]),
    "ServiceState": ("common", ["CONNECTED", "DEFERRED", "CANCELED", "FINISHED"]),
    "EventEntity": ("event", ["SESSION", "QUEUE", "RECIPIENT"]),
    "ReportKind": ("report", ["QUEUES", "RECIPIENTS"]),
    "ReportPeriod": ("report", ["DAILY", "WEEKLY", "MONTHLY"]),
    "ReportFormat": ("report", ["JSON", "CSV"]),
    "CallbackChannel": ("callback", ["CALL_BACK", "CALL_IN"]),
    "CallbackState": ("callback", ["WAITING", "NOTIFIED", "CONNECTED", "FINISHED", "TIME_OUT"]),
    "LinkMethod": ("recipient", ["CALLER_ID", "PIN"]),
    "RecipientAction": ("recipient", ["LOGIN", "LOGOUT", "READY", "AWAY", "LOGIN_READY", "TOGGLE"]),
}


def _pb2(name):
    return importlib.import_module(f"qroute.v1.{name}_pb2")


def _upper_snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


@pytest.mark.parametrize("name", PROTO_MODULES)
def test_stubs_import_as_qroute_v1(name):
    messages = _pb2(name)
    importlib.import_module(f"qroute.v1.{name}_pb2_grpc")
    assert messages.DESCRIPTOR.package == "qroute.v1"
    # protoc saw the files under -Iproto, so imports name qroute/v1/x.proto.
    assert messages.DESCRIPTOR.name == f"qroute/v1/{name}.proto"
    for dependency in messages.DESCRIPTOR.dependencies:
        assert dependency.name.startswith(("qroute/v1/", "google/protobuf/")), dependency.name


def test_type_stubs_are_installed():
    spec = importlib.util.find_spec("qroute.v1.queue_pb2")
    assert os.path.exists(os.path.splitext(spec.origin)[0] + ".pyi")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_service_has_every_rpc_of_the_contract(service):
    module, rpcs = SERVICES[service]
    descriptor = _pb2(module).DESCRIPTOR.services_by_name[service]
    for rpc, (client_streaming, server_streaming) in rpcs.items():
        method = descriptor.methods_by_name.get(rpc)
        assert method is not None, f"{service}.{rpc} is missing"
        assert method.client_streaming == client_streaming, f"{service}.{rpc}"
        assert method.server_streaming == server_streaming, f"{service}.{rpc}"
    # The grpc module exposes the client stub and the servicer base class.
    grpc_module = importlib.import_module(f"qroute.v1.{module}_pb2_grpc")
    assert hasattr(grpc_module, f"{service}Stub")
    assert hasattr(grpc_module, f"{service}Servicer")
    assert hasattr(grpc_module, f"add_{service}Servicer_to_server")


@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_message_has_every_field_of_the_contract(message):
    module, fields = MESSAGES[message]
    descriptor = _pb2(module).DESCRIPTOR.message_types_by_name[message]
    missing = [f for f in fields if f not in descriptor.fields_by_name]
    assert not missing, f"{message} lacks {missing}"


@pytest.mark.parametrize("enum", sorted(ENUMS))
def test_enum_has_every_value_of_the_contract(enum):
    module, values = ENUMS[enum]
    descriptor = _pb2(module).DESCRIPTOR.enum_types_by_name[enum]
    prefix = _upper_snake(enum)
    missing = [v for v in values if f"{prefix}_{v}" not in descriptor.values_by_name]
    assert not missing, f"{enum} lacks {missing}"


@pytest.mark.parametrize("name", PROTO_MODULES)
def test_every_enum_is_prefixed_and_has_an_unspecified_zero(name):
    module = _pb2(name)
    enums = list(module.DESCRIPTOR.enum_types_by_name.values())
    for message in module.DESCRIPTOR.message_types_by_name.values():
        enums.extend(message.enum_types)
    for enum in enums:
        prefix = _upper_snake(enum.name)
        assert enum.values_by_number[0].name == f"{prefix}_UNSPECIFIED", enum.full_name
        for value in enum.values:
            assert value.name.startswith(prefix + "_"), value.name


def test_router_numbers_are_stable():
    common = _pb2("common")
    assert [(v.name, v.number) for v in common.Router.DESCRIPTOR.values] == [
        ("ROUTER_UNSPECIFIED", 0), ("ROUTER_ROUND_ROBIN", 1), ("ROUTER_MOST_IDLE", 2),
        ("ROUTER_LEAST_CALLS", 3), ("ROUTER_LEAST_OFFERS", 4), ("ROUTER_LEAST_TALK_TIME", 5),
        ("ROUTER_LINEAR", 6), ("ROUTER_RANDOM", 7), ("ROUTER_MOST_SKILLED", 8),
        ("ROUTER_RING_ALL", 9),
    ]


def test_queue_options_with_nonzero_defaults_tell_unset_from_zero():
    queue_pb2 = _pb2("queue")
    queue = queue_pb2.Queue(name="support", tick_time=0)
    assert not queue.HasField("ring_timeout")
    assert not queue.HasField("timeout")
    assert queue.HasField("tick_time")


def test_messages_round_trip_through_the_wire_format():
    recipient_pb2, session_pb2 = _pb2("recipient"), _pb2("session")
    common_pb2 = _pb2("common")
    session = session_pb2.Session(
        id="s1", queue_id="q1", state=common_pb2.SESSION_STATE_WAITING,
        caller=common_pb2.Caller(number="+15550100", name="Ada"), skills={"fr": 3},
    )
    session.properties.update({"crm_id": "42"})
    event = recipient_pb2.AgentEvent(
        correlation="c1",
        offer=recipient_pb2.AgentEvent.Offer(offer_id="o1", session=session, ring_timeout_ms=20000),
    )
    decoded = recipient_pb2.AgentEvent.FromString(event.SerializeToString())
    assert decoded == event
    assert decoded.WhichOneof("event") == "offer"
    assert decoded.offer.session.properties["crm_id"] == "42"


def _routing():
    if importlib.util.find_spec("qroute.routing") is None:
        pytest.skip("qroute.routing is not written yet")
    return importlib.import_module("qroute.routing")


@pytest.mark.skipif(os.environ.get("QROUTE_REQUIRE_EXTENSIONS") != "1"
                    or os.environ.get("QROUTE_NO_EXTENSIONS") == "1",
                    reason="QROUTE_REQUIRE_EXTENSIONS=1 not set")
def test_compiled_dispatcher_is_loaded_when_required():
    routing = _routing()
    importlib.import_module("qroute.routing._core")  # its ImportError, if any, is the message
    assert routing.IMPLEMENTATION == "compiled"


@pytest.mark.skipif(os.environ.get("QROUTE_NO_EXTENSIONS") != "1",
                    reason="QROUTE_NO_EXTENSIONS=1 not set")
def test_reference_dispatcher_is_used_without_extensions():
    assert _routing().IMPLEMENTATION == "reference"


def test_dispatcher_implementation_is_known():
    assert _routing().IMPLEMENTATION in ("compiled", "reference")
