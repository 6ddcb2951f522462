package connector.deletion_test

import data.connector.deletion

_now := {"now": "2026-11-21T10:00:00Z"}

_delay(d) := {"leftOperand": "delayPeriod", "operator": "eq", "rightOperand": d}

_by(t) := {"leftOperand": "dateTime", "operator": "lteq", "rightOperand": t}

test_delay_period_seconds if {
	duty := {"action": "delete", "constraints": [_delay("PT2S")]}
	deletion.errors(duty) == [] with input as _now
	deletion.obligation(duty) == {"action": "delete", "deadline": "2026-11-21T10:00:02Z"} with input as _now
}

test_delay_period_days_and_hours if {
	duty := {"action": "delete", "constraints": [_delay("P1DT12H")]}
	deletion.obligation(duty) == {"action": "delete", "deadline": "2026-11-22T22:00:00Z"} with input as _now
}

test_delay_period_months_are_calendar_months if {
	duty := {"action": "delete", "constraints": [_delay("P1M")]}
	deletion.obligation(duty).deadline == "2026-12-21T10:00:00Z" with input as _now
}

test_fixed_deadline if {
	duty := {"action": "delete", "constraints": [_by("2026-12-31T00:00:00+01:00")]}
	deletion.errors(duty) == [] with input as _now
	deletion.obligation(duty).deadline == "2026-12-30T23:00:00Z" with input as _now
}

test_earlier_deadline_wins if {
	duty := {"action": "delete", "constraints": [_by("2026-11-21T10:00:01Z"), _delay("PT1H")]}
	deletion.obligation(duty).deadline == "2026-11-21T10:00:01Z" with input as _now
}

test_no_constraints_means_right_after_use if {
	deletion.obligation({"action": "delete"}).deadline == "2026-11-21T10:00:00Z" with input as _now
}

test_fractional_now_is_cut_to_the_second if {
	duty := {"action": "delete", "constraints": [_delay("PT0.5S")]}
	deletion.obligation(duty).deadline == "2026-11-21T10:00:01Z" with input as {"now": "2026-11-21T10:00:00.75Z"}
}

test_passed_deadline if {
	duty := {"action": "delete", "constraints": [_by("2026-11-20T00:00:00Z")]}
	deletion.errors(duty) == ["the deletion deadline 2026-11-20T00:00:00Z has passed (it is now 2026-11-21T10:00:00Z); the data must already have been deleted"] with input as _now
}

test_invalid_terms if {
	duty := {"action": "delete", "constraints": [
		_delay("2 seconds"),
		{"leftOperand": "payAmount", "operator": "eq", "rightOperand": 5},
		{"leftOperand": "delayPeriod", "operator": "lteq", "rightOperand": "PT1S"},
		_by("tomorrow"),
		{"and": [_delay("PT1S")]},
	]}
	deletion.errors(duty) == [
		"invalid ISO 8601 duration '2 seconds' for delayPeriod in a delete duty",
		"leftOperand 'payAmount' is not supported in a delete duty (use delayPeriod or dateTime)",
		"operator 'lteq' is not supported for delayPeriod in a delete duty",
		"invalid dateTime 'tomorrow' in a delete duty",
		"logical constraints are not supported in a delete duty",
	] with input as _now
}

test_missing_parts if {
	duty := {"action": "delete", "constraints": [
		{"leftOperand": "delayPeriod", "rightOperand": "PT1S"},
		{"leftOperand": "delayPeriod", "operator": "eq"},
	]}
	deletion.errors(duty) == [
		"malformed constraint on delayPeriod in a delete duty: operator missing",
		"malformed constraint on delayPeriod in a delete duty: rightOperand missing",
	] with input as _now
}

# --- overdue deletions ------------------------------------------------------------------

_late(agreement, settled) := {
	"transfer": "urn:uuid:t1", "agreement": agreement, "dataset": "ds-1",
	"deadline": "2026-11-20T00:00:00Z", "settled": settled,
}

_transfer_under(agreement, overdue) := {
	"phase": "transfer", "now": "2026-11-21T10:00:00Z",
	"request": {"agreement": agreement}, "usage": {"overdue_deletions": overdue},
}

# (each test pins the setting: an operator's own policies/local/settings.rego changes it)
_pin := {"overdue_scope": "agreement"}

test_the_default_scope_is_the_agreement if {
	deletion.overdue_scope == "agreement" with data.local.settings as {}
}

test_overdue_blocks_its_own_agreement_by_default if {
	deletion.overdue_reasons == ["the consumer has an overdue deletion: the copy of ds-1 delivered in transfer urn:uuid:t1 (agreement urn:a1) was due for deletion by 2026-11-20T00:00:00Z and no receipt has arrived; new transfers under this agreement wait for the receipt"] with input as _transfer_under("urn:a1", [_late("urn:a1", false)])
		with data.local.settings as _pin
}

test_overdue_does_not_block_another_agreement_by_default if {
	deletion.overdue_reasons == [] with input as _transfer_under("urn:a2", [_late("urn:a1", false)])
		with data.local.settings as _pin
}

test_overdue_scope_consumer_blocks_every_agreement if {
	count(deletion.overdue_reasons) == 1 with input as _transfer_under("urn:a2", [_late("urn:a1", false)])
		with data.local.settings.overdue_scope as "consumer"
}

test_overdue_scope_none_blocks_nothing if {
	deletion.overdue_reasons == [] with input as _transfer_under("urn:a1", [_late("urn:a1", false)])
		with data.local.settings.overdue_scope as "none"
}

test_an_unknown_scope_keeps_the_default if {
	deletion.overdue_scope == "agreement" with data.local.settings.overdue_scope as "everything"
}

test_a_settled_duty_blocks_nothing if {
	deletion.overdue_reasons == [] with input as _transfer_under("urn:a1", [_late("urn:a1", true)])
		with data.local.settings.overdue_scope as "consumer"
}

test_overdue_only_at_phase_transfer if {
	inp := object.union(_transfer_under("urn:a1", [_late("urn:a1", false)]), {"phase": "use"})
	deletion.overdue_reasons == [] with input as inp
		with data.local.settings.overdue_scope as "consumer"
}

test_overdue_without_facts_blocks_nothing if {
	deletion.overdue_reasons == [] with input as {"phase": "transfer", "now": "2026-11-21T10:00:00Z"}
		with data.local.settings.overdue_scope as "consumer"
}
