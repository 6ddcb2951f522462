# Helpers shared by the policy modules: time stamps, ISO 8601 durations, human-readable
# quantities and lists. Everything here evaluates identically under OPA and rego-cpp (regopy),
# so the library avoids `time.format` (rego-cpp prints nanoseconds and "+00:00") and
# parses time stamps through `parse_time` (rego-cpp rejects a trailing "Z").
package connector.util

# --- time stamps -------------------------------------------------------------------------

# parse_time(s) is the time stamp s (RFC 3339 / xsd:dateTime with a zone) in ns since the
# epoch; undefined when s is not one. Calendar arithmetic is written out in Rego (civil day
# numbers, as in H. Hinnant's date algorithms) rather than through time.* built-ins: OPA's Wasm
# target has no time built-ins, and so the library runs the same in OPA, its Wasm compilation
# and rego-cpp.
parse_time(s) := ns if {
	is_string(s)
	count(s) >= 20
	_separators(s)
	date := [_digits(substring(s, 0, 4)), _digits(substring(s, 5, 2)), _digits(substring(s, 8, 2))]
	clock := [_digits(substring(s, 11, 2)), _digits(substring(s, 14, 2)), _digits(substring(s, 17, 2))]
	_valid_date(date)
	clock[0] < 24
	clock[1] < 60
	clock[2] < 60
	tail := _fraction_and_zone(substring(s, 19, count(s) - 19))
	seconds := ((days_from_civil(date) * 86400) + ((clock[0] * 3600) + (clock[1] * 60))) + clock[2]
	ns := ((seconds - _offset_seconds(tail[1])) * 1000000000) + _fraction_ns(tail[0])
}

# (character checks rather than a regular expression: a pattern match costs more than the
# rest of the parse in every engine)
_separators(s) if {
	substring(s, 4, 1) == "-"
	substring(s, 7, 1) == "-"
	upper(substring(s, 10, 1)) == "T"
	substring(s, 13, 1) == ":"
	substring(s, 16, 1) == ":"
	_all_digits(concat("", [substring(s, 0, 4), substring(s, 5, 2), substring(s, 8, 2), substring(s, 11, 2), substring(s, 14, 2), substring(s, 17, 2)]))
}

_all_digits(t) if {
	t != ""
	trim_left(t, "0123456789") == ""
}

# _fraction_and_zone(rest) splits what follows the seconds: [".123" or "", "Z" or "+01:00"]
_fraction_and_zone(rest) := ["", rest] if {
	_zone(rest)
} else := [fraction, zone] if {
	startswith(rest, ".")
	zone := _zone_suffix(rest)
	fraction := substring(rest, 0, count(rest) - count(zone))
	count(fraction) >= 2
	count(fraction) <= 10
	_all_digits(substring(fraction, 1, count(fraction) - 1))
}

_zone_suffix(rest) := substring(rest, count(rest) - 1, 1) if {
	upper(substring(rest, count(rest) - 1, 1)) == "Z"
} else := z if {
	count(rest) >= 6
	z := substring(rest, count(rest) - 6, 6)
	_zone(z)
}

_zone(z) if upper(z) == "Z"

_zone(z) if {
	count(z) == 6
	substring(z, 0, 1) in {"+", "-"}
	substring(z, 3, 1) == ":"
	_all_digits(concat("", [substring(z, 1, 2), substring(z, 4, 2)]))
}

# _digits(s) is a string of decimal digits as a number (leading zeros allowed)
_digits(s) := 0 if {
	trim_left(s, "0") == ""
} else := to_number(trim_left(s, "0"))

_valid_date(date) if {
	date[1] >= 1
	date[1] <= 12
	date[2] >= 1
	date[2] <= _month_days(date[0], date[1])
}

_month_days(y, 2) := 29 if {
	mod(y, 4) == 0
	_leap_century(y)
} else := 28

_month_days(_, m) := [31, 0, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1] if m != 2

_leap_century(y) if mod(y, 100) != 0

_leap_century(y) if mod(y, 400) == 0

_offset_seconds(z) := 0 if {
	upper(z) == "Z"
} else := sign * ((_digits(substring(z, 1, 2)) * 3600) + (_digits(substring(z, 4, 2)) * 60)) if {
	sign := {"+": 1, "-": -1}[substring(z, 0, 1)]
}

_fraction_ns(f) := 0 if {
	f == ""
} else := _digits(substring(concat("", [substring(f, 1, count(f) - 1), "000000000"]), 0, 9))

# days_from_civil([y, m, d]) is the number of days from 1970-01-01 to that proleptic Gregorian
# date; a day past the month's end rolls over into the next month, like Go's time.AddDate.
days_from_civil(date) := (era * 146097) + (doe - 719468) if {
	y := date[0] - _early_month(date[1])
	era := floor(y / 400)
	yoe := y - (era * 400)
	doy := floor(((153 * _march_based(date[1])) + 2) / 5) + (date[2] - 1)
	doe := (((yoe * 365) + floor(yoe / 4)) - floor(yoe / 100)) + doy
}

_early_month(m) := 1 if m <= 2

else := 0

_march_based(m) := m - 3 if m > 2

else := m + 9

# civil_from_days(z) is [y, m, d] for day number z (inverse of days_from_civil).
civil_from_days(z) := [y + _early_month(m), m, d] if {
	shifted := z + 719468
	era := floor(shifted / 146097)
	doe := shifted - (era * 146097)
	yoe := floor((((doe - floor(doe / 1460)) + floor(doe / 36524)) - floor(doe / 146096)) / 365)
	y := yoe + (era * 400)
	doy := doe - (((365 * yoe) + floor(yoe / 4)) - floor(yoe / 100))
	mp := floor(((5 * doy) + 2) / 153)
	d := (doy - floor(((153 * mp) + 2) / 5)) + 1
	m := _month_of(mp)
}

_month_of(mp) := mp + 3 if mp < 10

else := mp - 9

# whole_seconds(ns) is floor(ns / 1e9), exact even where an engine divides in floating point
whole_seconds(ns) := s - 1 if {
	s := floor(ns / 1000000000)
	(s * 1000000000) > ns
} else := floor(ns / 1000000000)

# format_time(ns) is the UTC RFC 3339 form of ns, to the second (fractions are cut off, so a
# deadline is never later than the exact one).
format_time(ns) := concat("", [
	pad(date[0], 4), "-", pad(date[1], 2), "-", pad(date[2], 2), "T",
	pad(floor(secs / 3600), 2), ":", pad(floor(mod(secs, 3600) / 60), 2), ":", pad(mod(secs, 60), 2), "Z",
]) if {
	whole := whole_seconds(ns)
	days := floor(whole / 86400)
	secs := whole - (days * 86400)
	date := civil_from_days(days)
}

# pad(n, width) is the non-negative integer n in decimal with leading zeros to width digits
pad(n, width) := concat("", [_zeros(width - count(format_int(n, 10))), format_int(n, 10)])

_zeros(k) := concat("", ["0" | some _ in numbers.range(1, k)]) if k > 0

else := ""

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
add_duration(ns, d) := (ns + (d.days * 86400000000000)) + d.ns if {
	d.years == 0
	d.months == 0
} else := ((((days_from_civil(moved) - days) * 86400) * 1000000000) + ns) + d.ns if {
	days := floor(whole_seconds(ns) / 86400)
	date := civil_from_days(days)
	months := ((date[0] * 12) + (date[1] - 1)) + ((d.years * 12) + d.months)
	moved := [floor(months / 12), mod(months, 12) + 1, date[2] + d.days]
}

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

# mod(a, b) is a modulo b for non-negative integers.
mod(a, b) := a % b

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
_decimals(f, width) := trim_right(pad(f, width), "0")

# plural(n, word) is "1 transfer", "3 transfers", "1.5 hours"
plural(n, word) := concat(" ", [number_text(n), word]) if {
	n == 1
} else := concat("", [number_text(n), " ", word, "s"])

# format_bytes(n) is n bytes in decimal units with up to 2 decimals: "999 B", "1.5 KB",
# "1.2 GB", "1 GB".
format_bytes(n) := concat("", [number_text(round(n)), " B"]) if {
	round(n) < 1000
} else := _in_unit(n, "KB", 1000) if {
	round(n / 10000) < 100
} else := _in_unit(n, "MB", 1000000) if {
	round(n / 10000000) < 100
} else := _in_unit(n, "GB", 1000000000) if {
	round(n / 10000000000) < 100
} else := _in_unit(n, "TB", 1000000000000) if {
	round(n / 10000000000000) < 100
} else := _in_unit(n, "PB", 1000000000000000)

# (the unit is the largest in which n is at least 1.00 after rounding to hundredths)
_in_unit(n, unit, size) := _scaled(format_int((hundredths - frac) / 100, 10), frac, unit) if {
	hundredths := round((n * 100) / size)
	frac := mod(hundredths, 100)
}

_scaled(whole, 0, unit) := concat(" ", [whole, unit])

_scaled(whole, frac, unit) := concat("", [whole, ".", _decimals(frac, 2), " ", unit]) if frac != 0

# format_bytes_pair(a, b) formats a and b, falling back to exact byte counts when rounding
# would make two different quantities look equal ("1 GB exceeds the agreed 1 GB").
format_bytes_pair(a, b) := _pair(a, b, format_bytes(a), format_bytes(b))

_pair(a, b, fa, fb) := [fa, fb] if {
	fa != fb
} else := [fa, fb] if {
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
