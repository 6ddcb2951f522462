package connector.util_test

import data.connector.util

test_parse_time_accepts_z_and_offsets if {
	util.parse_time("2026-11-21T10:00:00Z") == util.parse_time("2026-11-21T11:00:00+01:00")
	util.parse_time("2026-11-21T10:00:00z") == 1795255200000000000
	not util.parse_time("2026-11-21")
	not util.parse_time(42)
}

test_format_time if {
	util.format_time(1795255200000000000) == "2026-11-21T10:00:00Z"
	util.format_time(1795255200999999999) == "2026-11-21T10:00:00Z"
}

test_parse_duration if {
	util.parse_duration("P30D") == {"years": 0, "months": 0, "days": 30, "ns": 0}
	util.parse_duration("PT2S") == {"years": 0, "months": 0, "days": 0, "ns": 2000000000}
	util.parse_duration("P1Y2M3W4DT5H6M7.5S") == {"years": 1, "months": 2, "days": 25, "ns": 18367500000000}
	util.parse_duration("PT0.25S").ns == 250000000
}

test_parse_duration_rejects if {
	every s in ["", "P", "PT", "30D", "P1.5D", "PT-1S", "P1DT", "p1d"] {
		not util.parse_duration(s)
	}
	not util.parse_duration(30)
}

test_add_duration if {
	start := util.parse_time("2026-01-31T00:00:00Z")
	util.format_time(util.add_duration(start, util.parse_duration("P1DT1H"))) == "2026-02-01T01:00:00Z"
	util.format_time(util.add_duration(start, util.parse_duration("P1Y"))) == "2027-01-31T00:00:00Z"
}

test_describe_duration if {
	util.describe_duration(util.parse_duration("P30D")) == "30 days"
	util.describe_duration(util.parse_duration("P1Y1M1D")) == "1 year 1 month 1 day"
	util.describe_duration(util.parse_duration("PT2H30M")) == "2 hours 30 minutes"
	util.describe_duration(util.parse_duration("PT1.5S")) == "1.5 seconds"
	util.describe_duration(util.parse_duration("PT0S")) == "0 seconds"
}

test_describe_span if {
	util.describe_span(0) == "0 seconds"
	util.describe_span(((86400 + 3600) + 61) * 1000000000) == "1 day 1 hour 1 minute 1 second"
	util.describe_span(2500000000) == "2 seconds"
}

test_format_bytes if {
	util.format_bytes(0) == "0 B"
	util.format_bytes(999) == "999 B"
	util.format_bytes(1000) == "1 KB"
	util.format_bytes(1500) == "1.5 KB"
	util.format_bytes(999999) == "1 MB"
	util.format_bytes(1050000) == "1.05 MB"
	util.format_bytes(1000000000) == "1 GB"
	util.format_bytes(1200000000) == "1.2 GB"
	util.format_bytes(1.2e9) == "1.2 GB"
	util.format_bytes(1234567890) == "1.23 GB"
	util.format_bytes(3000000000000) == "3 TB"
	util.format_bytes(5e15) == "5 PB"
}

test_format_bytes_pair if {
	util.format_bytes_pair(1200000000, 1000000000) == ["1.2 GB", "1 GB"]
	util.format_bytes_pair(1000400000, 1000000000) == ["1000400000 B", "1000000000 B"]
	util.format_bytes_pair(1000000000, 1000000000) == ["1 GB", "1 GB"]
}

test_number_text if {
	util.number_text(3) == "3"
	util.number_text(2.5) == "2.5"
	util.number_text(0.125) == "0.125"
	util.number_text(-1.5) == "-1.5"
	util.number_text(1e9) == "1000000000"
}

test_plural if {
	util.plural(1, "transfer") == "1 transfer"
	util.plural(0, "transfer") == "0 transfers"
	util.plural(3, "record") == "3 records"
}

test_lists if {
	util.as_list("a") == ["a"]
	util.as_list(["b", "a"]) == ["b", "a"]
	util.as_list({"b", "a"}) == ["a", "b"]
	util.join(["EU", "CN"]) == "EU, CN"
	util.join([]) == "(none)"
	util.join("research") == "research"
	util.text(true) == "true"
	util.text(null) == "null"
	util.text([1, "a", [2]]) == "[1, a, …]"
	util.text({"a": 1}) == "an object"
	util.quoted(7) == "'7'"
}

test_mod if {
	util.mod(7200, 60) == 0
	util.mod(61, 60) == 1
	util.mod(1999, 1000) == 999
	util.mod(0, 7) == 0
}

test_smallest_compares_numbers_not_digits if {
	util.smallest([1000000000, 249999999]) == 249999999
	util.smallest({10, 2, 3}) == 2
	util.smallest([5]) == 5
	not util.smallest([])
	util.non_negative(-3) == 0
	util.non_negative(4) == 4
}

test_parse_time_calendar if {
	util.parse_time("1970-01-01T00:00:00Z") == 0
	util.parse_time("2024-02-29T12:00:00Z") == util.parse_time("2024-02-29T07:00:00-05:00")
	util.parse_time("2026-11-21T10:00:00.5Z") == 1795255200500000000
	util.parse_time("2026-11-21T10:00:00.123456789Z") == 1795255200123456789
	not util.parse_time("2025-02-29T00:00:00Z")
	not util.parse_time("2026-13-01T00:00:00Z")
	not util.parse_time("2026-11-21T24:00:00Z")
	not util.parse_time("2026-11-21T10:00:00")
}

test_format_time_calendar if {
	util.format_time(0) == "1970-01-01T00:00:00Z"
	util.format_time(util.parse_time("2000-02-29T23:59:59Z")) == "2000-02-29T23:59:59Z"
	util.format_time(util.parse_time("2100-03-01T00:00:00+01:00")) == "2100-02-28T23:00:00Z"
}

test_add_duration_rolls_over_like_go if {
	util.format_time(util.add_duration(util.parse_time("2026-01-31T08:00:00Z"), util.parse_duration("P1M"))) == "2026-03-03T08:00:00Z"
	util.format_time(util.add_duration(util.parse_time("2024-02-29T00:00:00Z"), util.parse_duration("P1Y"))) == "2025-03-01T00:00:00Z"
	util.format_time(util.add_duration(util.parse_time("2026-11-21T10:00:00Z"), util.parse_duration("P1Y13M40DT2H"))) == "2029-01-30T12:00:00Z"
	util.format_time(util.add_duration(util.parse_time("2026-12-31T23:00:00Z"), util.parse_duration("PT1H"))) == "2027-01-01T00:00:00Z"
}

test_format_bytes_unit_boundaries if {
	util.format_bytes(994999) == "995 KB"
	util.format_bytes(995000) == "1 MB"
	util.format_bytes(994999999) == "995 MB"
	util.format_bytes(999995000) == "1 GB"
	util.format_bytes(1500000000000) == "1.5 TB"
	util.format_bytes(2000000000000000) == "2 PB"
}
