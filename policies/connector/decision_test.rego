package connector.decision_test

import data.connector.decision

_base := {
	"phase": "transfer",
	"now": "2026-11-21T10:00:00Z",
	"provider": {"id": "did:web:provider"},
	"consumer": {
		"id": "did:web:consumer",
		"credentials": {"membership": true, "roles": ["research"], "organisation": "Example", "region": "EU"},
	},
	"dataset": {"id": "urn:ds", "classification": "general", "owner": "did:web:provider"},
	"policy": {"permissions": [_research], "prohibitions": [], "obligations": []},
	"request": {"purpose": "research", "bytes": 0, "records": 0, "jurisdiction": "EU"},
	"usage": {
		"bytes": 999999000, "records": 0, "transfers": 0, "uses": 0,
		"agreed_at": "2026-11-01T00:00:00Z", "first_use": null,
	},
}

_c(l, op, r) := {"leftOperand": l, "operator": op, "rightOperand": r}

_research := {
	"action": "use",
	"constraints": [
		_c("purpose", "isAnyOf", ["research"]),
		_c("tdsc:volumeBytes", "lteq", 1000000000),
		_c("count", "lteq", 3),
	],
	"duties": [{"action": "delete", "constraints": [_c("delayPeriod", "eq", "PT2S")]}],
}

_with(patch) := object.union(_base, patch)

_policy(permissions, prohibitions, obligations) := {"policy": {"permissions": permissions, "prohibitions": prohibitions, "obligations": obligations}}

_no_limits := {"bytes_remaining": null, "records_remaining": null, "transfers_remaining": null}

test_contract_example_allows if {
	decision.decision == {
		"allow": true,
		"reasons": [],
		"obligations": [{"action": "delete", "deadline": "2026-11-21T10:00:02Z"}],
		"limits": {"bytes_remaining": 1000, "records_remaining": null, "transfers_remaining": 2},
	} with input as _base
}

test_purpose_denied if {
	d := decision.decision with input as _with({"request": {"purpose": "marketing"}})
	d == {
		"allow": false,
		"reasons": ["purpose 'marketing' is not among the permitted purposes: research"],
		"obligations": [],
		"limits": _no_limits,
	}
}

test_volume_denied_with_units if {
	d := decision.decision with input as _with({"request": {"bytes": 1200000000}, "usage": {"bytes": 0}})
	not d.allow
	d.reasons == ["requested 1.2 GB exceeds the agreed 1 GB"]
}

test_one_reason_per_failed_check if {
	d := decision.decision with input as _with({"request": {"purpose": "ads", "bytes": 5000}, "usage": {"transfers": 3}})
	d.reasons == [
		"purpose 'ads' is not among the permitted purposes: research",
		"requested 5 KB on top of 1 GB already transferred (1000004000 B in total) exceeds the agreed 1000000000 B",
		"this would be transfer 4, but the agreement allows at most 3 transfers",
	]
}

test_prohibition_denies if {
	prohibition := {"action": "use", "constraints": [_c("spatial", "isAnyOf", ["US"])]}
	d := decision.decision with input as _with(object.union(_policy([_research], [prohibition], []), {"request": {"jurisdiction": "US"}}))
	d == {
		"allow": false,
		"reasons": ["use is prohibited when jurisdiction 'US' (declared jurisdiction) is within US"],
		"obligations": [],
		"limits": _no_limits,
	}
	decision.allow with input as _with(_policy([_research], [prohibition], []))
}

test_no_permission if {
	decision.decision.reasons == ["the policy grants no permission"] with input as _with(_policy([], [], []))
	not decision.allow with input as object.remove(_base, ["policy"])
}

test_first_allowing_permission_gives_obligations_and_limits if {
	narrow := {"action": "use", "constraints": [_c("tdsc:role", "eq", "admin")], "duties": [{"action": "notify"}]}
	wide := {"action": "use", "constraints": [_c("tdsc:transferBytes", "lteq", 5000)], "duties": [{"action": "log"}]}
	d := decision.decision with input as _with(_policy([narrow, wide], [], [{"action": "notify"}]))
	d == {
		"allow": true,
		"reasons": [],
		"obligations": [{"action": "log", "constraints": []}, {"action": "notify", "constraints": []}],
		"limits": {"bytes_remaining": 5000, "records_remaining": null, "transfers_remaining": null},
	}
}

test_reasons_of_several_permissions_are_numbered if {
	a := {"action": "use", "constraints": [_c("tdsc:role", "eq", "admin")]}
	b := {"action": "use", "constraints": [_c("tdsc:membership", "eq", true)]}
	d := decision.decision with input as _with(object.union(_policy([a, b], [], []), {"consumer": {"credentials": {"membership": false}}}))
	d.reasons == [
		"permission 1: the consumer's roles (research) do not include the required role admin",
		"permission 2: the consumer holds no verified membership credential",
	]
}

test_unknown_term_denies_even_in_another_permission if {
	odd := {"action": "use", "constraints": [_c("odrl:industry", "eq", "x")]}
	d := decision.decision with input as _with(_policy([_research, odd], [], []))
	d.reasons == ["unknown leftOperand 'odrl:industry' (not in the policy profile)"]
	not d.allow
	d.obligations == []
}

test_unknown_action_denies if {
	d := decision.decision with input as _with(_policy([{"action": "sell"}], [], []))
	d.reasons == ["unknown action 'sell' in a permission"]
}

test_core_data if {
	core := {"dataset": {"classification": "core"}}
	d := decision.decision with input as _with(object.union(core, {"phase": "catalog"}))
	d.reasons == ["dataset urn:ds is core data and is never offered outside its owner did:web:provider"]
	decision.allow with input as _with(object.union(core, {"consumer": {"id": "did:web:provider"}}))
}

test_important_data if {
	permission := {
		"action": "use",
		"constraints": [_c("purpose", "isAnyOf", ["research"]), _c("spatial", "isAnyOf", ["EU"])],
		"duties": [{"action": "log"}],
	}
	important := object.union(_policy([permission], [], []), {"dataset": {"classification": "important"}})
	d := decision.decision with input as _with(important)
	d.allow
	d.obligations == [{"action": "log", "constraints": []}]
	d2 := decision.decision with input as _with(object.union(important, {"request": {"jurisdiction": "US"}}))
	d2.reasons == ["jurisdiction 'US' (declared jurisdiction) is not among the allowed jurisdictions: EU"]
	d3 := decision.decision with input as _with(object.union(important, {"dataset": {"classification": "important"}, "policy": {"permissions": [_research]}}))
	d3.reasons == [
		"important data needs an allowed jurisdiction; the offer has no spatial constraint",
		"important data needs a log duty; the policy has none",
	]
}

test_catalog_does_not_need_a_purpose if {
	d := decision.decision with input as _with({"phase": "catalog", "request": {"purpose": null}, "usage": {}})
	d.allow
	d.limits.transfers_remaining == 3
}

test_input_checks if {
	d := decision.decision with input as _with({"phase": "download"})
	d.reasons == ["unknown phase 'download' (expected catalog, negotiation, transfer, stream or use)"]
	d2 := decision.decision with input as object.remove(_base, ["now"])
	not d2.allow
	d2.reasons[0] == "the decision input has no valid 'now' time stamp"
}

test_passed_deletion_deadline_denies if {
	permission := {"action": "use", "duties": [{"action": "delete", "constraints": [_c("dateTime", "lteq", "2026-11-01T00:00:00Z")]}]}
	d := decision.decision with input as _with(_policy([permission], [], []))
	d.reasons == ["the deletion deadline 2026-11-01T00:00:00Z has passed (it is now 2026-11-21T10:00:00Z); the data must already have been deleted"]
}

test_limits if {
	permission := {"action": "use", "constraints": [
		_c("tdsc:volumeBytes", "lteq", 1000000000),
		_c("tdsc:transferBytes", "lteq", 250000000),
		_c("tdsc:volumeRecords", "lt", 100),
		{"and": [_c("count", "lteq", 10)]},
		{"or": [_c("count", "lteq", 1), _c("purpose", "eq", "research")]},
	]}
	d := decision.decision with input as _with(object.union(_policy([permission], [], []), {"usage": {"bytes": 900000000, "records": 9, "transfers": 4}}))
	d.limits == {"bytes_remaining": 100000000, "records_remaining": 90, "transfers_remaining": 5}
}

test_unlimited if {
	d := decision.decision with input as _with(_policy([{"action": "use"}], [], []))
	d == {"allow": true, "reasons": [], "obligations": [], "limits": _no_limits}
}

test_compensate_is_passed_on if {
	pay := [_c("payAmount", "eq", 12.5), _c("unit", "eq", "per-transfer"), _c("tdsc:currency", "eq", "EUR")]
	d := decision.decision with input as _with(_policy([{"action": "use", "duties": [{"action": "compensate", "constraints": pay}]}], [], []))
	d.obligations == [{"action": "compensate", "constraints": pay}]
}

test_disputed_metering_windows_deny_a_transfer if {
	usage := object.union(_base.usage, {"disputed_windows": [{"seq": 2, "transfer": "urn:t", "why": "no receipt"}], "max_disputed_windows": 0})
	d := decision.decision with input as object.union(_base, {"usage": usage})
	not d.allow
	d.reasons == ["metering window record 2 (no receipt) of this agreement is disputed (refused by the consumer or without its receipt past the deadline); at most 0 disputed windows allowed before new transfers: send the receipts first"]
	tolerated := object.union(usage, {"max_disputed_windows": 1})
	decision.decision.allow with input as object.union(_base, {"usage": tolerated})
}

test_an_overdue_deletion_denies_the_transfer_under_its_agreement if {
	inp := {
		"phase": "transfer", "now": "2026-11-21T10:00:00Z",
		"consumer": {"id": "did:web:c"}, "provider": {"id": "did:web:p"},
		"policy": {"permissions": [{"action": "use", "constraints": []}]},
		"request": {"agreement": "urn:a1"},
		"usage": {"overdue_deletions": [{"transfer": "urn:t", "agreement": "urn:a1", "dataset": "d", "deadline": "2026-11-20T00:00:00Z"}]},
	}
	d := decision.decision with input as inp
		with data.local.settings.overdue_scope as "agreement"
	not d.allow
	contains(d.reasons[0], "overdue deletion")
}
