# Helpers shared by the policy modules: time stamps, ISO 8601 durations, human-readable
# quantities and lists. Everything here evaluates identically under OPA and rego-cpp (regopy),
# so the library avoids `time.format` (rego-cpp prints nanoseconds and "+00:00") and
# parses time stamps through `parse_time` (rego-cpp rejects a trailing "Z").
package connector.util

# --- time stamps -------------------------------------------------------------------------

# parse_time(s) is the time stamp s (RFC 3339 / xsd:dateTime with a zone) in ns since the
# epoch; undefined when s is not one.
parse_time(s) := time.parse_rfc3339_ns(_zulu_to_offset(s)) if is_string(s)

_zulu_to_offset(s) := concat("", [substring(s, 0, count(s) - 1), "+00:00"]) if {
	count(s) > 0
	upper(substring(s, count(s) - 1, 1)) == "Z"
} else := s

# format_time(ns) is the UTC RFC 3339 form of ns, to the second (fractions are cut off, so a
# deadline is never later than the exact one).
format_time(ns) := sprintf("%04d-%02d-%02dT%02d:%02d:%02dZ", [d[0], d[1], d[2], c[0], c[1], c[2]]) if {
	d := time.date(ns)
	c := time.clock(ns)
}

# now_ns is input.now; undefined when it is missing or not a time stamp.
now_ns := parse_time(input.now)

# --- ISO 8601 durations ------------------------------------------------------------------

_duration_pattern := `^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`

# parse_duration(s) is {"years", "months", "days", "ns"} for an ISO 8601 duration such as
# "P30D", "P1Y2M", "PT2H30M", "PT0.5S" (weeks count as 7 days); undefined when s is not one.
parse_duration(s) := d if {
	is_string(s)
	s != "P"
	not endswith(s, "T")
	m := regex.find_all_string_submatch_n(_duration_pattern, s, 1)
	count(m) == 1
	g := m[0]
	d := {
		"years": _int(g[1]),
		"months": _int(g[2]),
		"days": (_int(g[3]) * 7) + _int(g[4]),
		"ns": (((_int(g[5]) * 3600) + (_int(g[6]) * 60)) * 1000000000) + round(_dec(g[7]) * 1000000000),
	}
}

_int(s) := 0 if s == ""

_int(s) := to_number(s) if s != ""

_dec(s) := 0 if s == ""

_dec(s) := to_number(s) if s != ""

# add_duration(ns, d) is the instant d (from parse_duration) after ns, calendar-aware for
# years and months.
add_duration(ns, d) := time.add_date(ns, d.years, d.months, d.days) + d.ns

# describe_duration(d) is d in words: "30 days", "1 year 2 months", "2 hours 30 minutes".
describe_duration(d) := "0 seconds" if {
	_duration_parts(d) == []
} else := concat(" ", _duration_parts(d))

_duration_parts(d) := [p |
	some u in [
		["year", d.years], ["month", d.months], ["day", d.days],
		["hour", _hours(d.ns)], ["minute", _minutes(d.ns)], ["second", _seconds(d.ns)],
	]
	u[1] != 0
	p := plural(u[1], u[0])
]

# (in milliseconds: small enough for exact float division in both engines)
_hours(ns) := floor(round(ns / 1000000) / 3600000)

_minutes(ns) := floor(mod(round(ns / 1000000), 3600000) / 60000)

# whole seconds, or seconds with up to 3 decimals
_seconds(ns) := mod(round(ns / 1000000), 60000) / 1000

# describe_span(ns) is a non-negative span of time in words: "31 days 2 hours", "45 seconds".
describe_span(ns) := "0 seconds" if {
	_span_parts(ns) == []
} else := concat(" ", _span_parts(ns))

_span_parts(ns) := [p |
	whole := floor(ns / 1000000000)
	some u in [
		["day", floor(whole / 86400)], ["hour", floor(mod(whole, 86400) / 3600)],
		["minute", floor(mod(whole, 3600) / 60)], ["second", mod(whole, 60)],
	]
	u[1] != 0
	p := plural(u[1], u[0])
]

# --- quantities --------------------------------------------------------------------------

# smallest(xs) is the smallest number of a non-empty array or set, and non_negative(n) is
# max(0, n). rego-cpp 1.5's min, max and sort order numbers by their digits ("1000" < "25"), so
# the library compares numbers with < and <= only.
smallest(xs) := v if {
	some v in xs
	every w in xs {
		v <= w
	}
}

non_negative(n) := n if n >= 0

else := 0

# mod(a, b) is a modulo b for non-negative integers. rego-cpp 1.5's % returns a broken number
# when the remainder is 0 or has fewer digits ("7200 % 60" prints "00" and is not equal to 0).
mod(a, b) := a - (b * floor(a / b))

# number_text(n) prints a number without exponent: integers plainly, others with up to 3
# decimals ("2.5", "0.125"). sprintf("%v") differs between the engines for large floats.
number_text(n) := format_int(n, 10) if {
	n == floor(n)
} else := t if {
	milli := round(abs(n) * 1000)
	frac := mod(milli, 1000)
	sign := _sign(n)
	t := concat("", [sign, format_int((milli - frac) / 1000, 10), ".", _decimals(frac, 3)])
}

_sign(n) := "-" if n < 0

else := ""

# _decimals(f, width) is f as `width` digits with the trailing zeros removed
_decimals(f, 3) := trim_right(sprintf("%03d", [f]), "0")

_decimals(f, 2) := trim_right(sprintf("%02d", [f]), "0")

# plural(n, word) is "1 transfer", "3 transfers", "1.5 hours"
plural(n, word) := concat(" ", [number_text(n), word]) if {
	n == 1
} else := concat("", [number_text(n), " ", word, "s"])

_byte_units := [["PB", 1000000000000000], ["TB", 1000000000000], ["GB", 1000000000], ["MB", 1000000], ["KB", 1000]]

# format_bytes(n) is n bytes in decimal units with up to 2 decimals: "999 B", "1.5 KB",
# "1.2 GB", "1 GB".
format_bytes(n) := concat("", [number_text(round(n)), " B"]) if {
	round(n) < 1000
} else := text if {
	some u in _byte_units
	hundredths := round((n * 100) / u[1])
	hundredths >= 100
	frac := mod(hundredths, 100)
	text := _scaled(format_int((hundredths - frac) / 100, 10), frac, u[0])

	# the first (largest) fitting unit only
	every v in _larger_units(u[0]) {
		round((n * 100) / v[1]) < 100
	}
}

_larger_units(name) := array.slice(_byte_units, 0, i) if {
	some i, u in _byte_units
	u[0] == name
}

_scaled(whole, 0, unit) := concat(" ", [whole, unit])

_scaled(whole, frac, unit) := concat("", [whole, ".", _decimals(frac, 2), " ", unit]) if frac != 0

# format_bytes_pair(a, b) formats a and b, falling back to exact byte counts when rounding
# would make two different quantities look equal ("1 GB exceeds the agreed 1 GB").
format_bytes_pair(a, b) := [format_bytes(a), format_bytes(b)] if {
	format_bytes(a) != format_bytes(b)
} else := [format_bytes(a), format_bytes(b)] if {
	a == b
} else := [concat(" ", [number_text(a), "B"]), concat(" ", [number_text(b), "B"])]

# --- lists -------------------------------------------------------------------------------

# as_list(x) is x as an array: arrays unchanged, sets sorted, anything else as [x].
as_list(x) := x if is_array(x)

as_list(x) := sort(x) if is_set(x)

as_list(x) := [x] if {
	not is_array(x)
	not is_set(x)
}

# text(x) prints a term for a reason: strings as they are, numbers without exponent, lists of
# scalars as "[a, b]". No json.marshal: regopy cannot serialise input built with regopy.Input.
text(x) := _scalar_text(x) if not _composite(x)

text(x) := concat("", ["[", concat(", ", [_scalar_text(v) | some v in x]), "]"]) if is_array(x)

text(x) := "an object" if is_object(x)

text(x) := "a set" if is_set(x)

_composite(x) if is_array(x)

_composite(x) if is_object(x)

_composite(x) if is_set(x)

_scalar_text(x) := x if is_string(x)

_scalar_text(x) := number_text(x) if is_number(x)

_scalar_text(true) := "true"

_scalar_text(false) := "false"

_scalar_text(x) := "null" if is_null(x)

_scalar_text(x) := "…" if _composite(x)

# join(xs) is "a, b, c"; "(none)" for an empty list.
join(xs) := "(none)" if {
	count(as_list(xs)) == 0
} else := concat(", ", [text(x) | some x in as_list(xs)])

# quoted(x) is 'x'
quoted(x) := concat("", ["'", text(x), "'"])

# cat(parts) joins strings. The library builds every text with concat: rego-cpp's
# sprintf("%s") wraps strings made by concat, upper or format_int in quotes.
cat(parts) := concat("", parts)

# --- results -----------------------------------------------------------------------------

# Every constraint evaluates to {"ok": bool, "text": string}: text says why it does not hold
# (ok false) or what holds (ok true, used in prohibition reasons). "deferred": true marks a
# constraint that cannot be decided yet (no purpose declared while browsing the catalog).
result(true, t) := {"ok": true, "text": t}

result(false, t) := {"ok": false, "text": t}

fail(t) := {"ok": false, "text": t}

# unsupported(c) is the result for an operator a leftOperand does not take.
unsupported(c) := fail(cat(["operator ", quoted(object.get(c, "operator", null)), " is not supported for leftOperand ", quoted(c.leftOperand)]))
