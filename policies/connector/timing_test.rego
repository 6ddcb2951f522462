package connector.timing_test

import data.connector.timing

_now(t) := {"now": t, "usage": {"agreed_at": "2026-11-01T00:00:00Z"}}

_dt(op, t) := {"leftOperand": "dateTime", "operator": op, "rightOperand": t}

_elapsed(op, d) := {"leftOperand": "elapsedTime", "operator": op, "rightOperand": d}

test_valid_until if {
	r := timing.evaluate(_dt("lteq", "2026-12-31T23:59:59Z")) with input as _now("2026-11-21T10:00:00Z")
	r.ok
	r.text == "it is not after 2026-12-31T23:59:59Z"
}

test_expired if {
	r := timing.evaluate(_dt("lteq", "2026-11-20T00:00:00Z")) with input as _now("2026-11-21T10:00:00Z")
	not r.ok
	r.text == "use is permitted until 2026-11-20T00:00:00Z; it is now 2026-11-21T10:00:00Z"
}

test_lt_boundary if {
	not timing.evaluate(_dt("lt", "2026-11-21T10:00:00Z")).ok with input as _now("2026-11-21T10:00:00Z")
	timing.evaluate(_dt("lteq", "2026-11-21T10:00:00Z")).ok with input as _now("2026-11-21T10:00:00Z")
}

test_not_yet_valid if {
	r := timing.evaluate(_dt("gteq", "2027-01-01T00:00:00Z")) with input as _now("2026-11-21T10:00:00Z")
	not r.ok
	r.text == "use is permitted from 2027-01-01T00:00:00Z; it is now 2026-11-21T10:00:00Z"
	timing.evaluate(_dt("gt", "2026-01-01T00:00:00Z")).ok with input as _now("2026-11-21T10:00:00Z")
}

test_zone_offsets_compare_as_instants if {
	timing.evaluate(_dt("lteq", "2026-11-21T11:00:00+01:00")).ok with input as _now("2026-11-21T10:00:00Z")
	not timing.evaluate(_dt("lt", "2026-11-21T11:00:00+01:00")).ok with input as _now("2026-11-21T10:00:00Z")
}

test_invalid_date_time if {
	r := timing.evaluate(_dt("lteq", "next tuesday")) with input as _now("2026-11-21T10:00:00Z")
	not r.ok
	r.text == "invalid dateTime 'next tuesday' (expected an RFC 3339 time stamp with zone)"
}

test_missing_now if {
	r := timing.evaluate(_dt("lteq", "2026-12-31T23:59:59Z")) with input as {}
	not r.ok
	r.text == "the decision input has no valid 'now' time stamp (got 'null')"
}

test_elapsed_within if {
	r := timing.evaluate(_elapsed("lteq", "P30D")) with input as _now("2026-11-21T10:00:00Z")
	r.ok
	r.text == "20 days 10 hours since the agreement, within 30 days (P30D)"
}

test_elapsed_exceeded if {
	r := timing.evaluate(_elapsed("lteq", "P30D")) with input as _now("2026-12-02T06:30:00Z")
	not r.ok
	r.text == "31 days 6 hours 30 minutes have elapsed since the agreement (2026-11-01T00:00:00Z); use is permitted for 30 days (P30D), until 2026-12-01T00:00:00Z"
}

test_elapsed_counts_from_first_use if {
	inp := {"now": "2026-11-21T10:00:00Z", "usage": {"agreed_at": "2026-11-01T00:00:00Z", "first_use": "2026-11-21T08:30:00Z"}}
	r := timing.evaluate(_elapsed("lteq", "PT2H")) with input as inp
	r.ok
	r.text == "1 hour 30 minutes since first use, within 2 hours (PT2H)"
	r2 := timing.evaluate(_elapsed("lt", "PT1H")) with input as inp
	not r2.ok
	r2.text == "1 hour 30 minutes have elapsed since first use (2026-11-21T08:30:00Z); use is permitted for 1 hour (PT1H), until 2026-11-21T09:30:00Z"
}

test_elapsed_null_first_use_uses_agreement if {
	inp := {"now": "2026-11-21T10:00:00Z", "usage": {"agreed_at": "2026-11-21T09:00:00Z", "first_use": null}}
	timing.evaluate(_elapsed("lteq", "PT2H")).ok with input as inp
}

test_elapsed_calendar_months if {
	# P1M from 2026-01-31 normalises like Go's AddDate: 2026-03-03
	inp := {"now": "2026-03-02T00:00:00Z", "usage": {"agreed_at": "2026-01-31T00:00:00Z"}}
	timing.evaluate(_elapsed("lteq", "P1M")).ok with input as inp
}

test_embargo_with_gteq if {
	r := timing.evaluate(_elapsed("gteq", "P30D")) with input as _now("2026-11-21T10:00:00Z")
	not r.ok
	r.text == "only 20 days 10 hours have elapsed since the agreement (2026-11-01T00:00:00Z); use is permitted after 30 days (P30D), from 2026-12-01T00:00:00Z"
}

test_elapsed_before_agreement_is_zero if {
	timing.evaluate(_elapsed("lteq", "PT1S")).ok with input as {"now": "2026-11-21T10:00:00Z"}
}

test_invalid_duration if {
	r := timing.evaluate(_elapsed("lteq", "30 days")) with input as _now("2026-11-21T10:00:00Z")
	not r.ok
	r.text == "invalid ISO 8601 duration '30 days' for elapsedTime (expected e.g. P30D or PT2H)"
}

test_unsupported_operator if {
	r := timing.evaluate(_dt("eq", "2026-11-21T10:00:00Z")) with input as _now("2026-11-21T10:00:00Z")
	r.text == "operator 'eq' is not supported for leftOperand 'dateTime'"
}

test_expiry if {
	timing.expiry(_dt("lteq", "2026-12-31T23:59:59Z")) == time.parse_rfc3339_ns("2026-12-31T23:59:59Z") with input as _now("2026-11-21T10:00:00Z")
	timing.expiry(_elapsed("lteq", "P30D")) == time.parse_rfc3339_ns("2026-12-01T00:00:00Z") with input as _now("2026-11-21T10:00:00Z")
	not timing.expiry(_dt("gteq", "2026-12-31T23:59:59Z"))
}
