package connector.volume_test

import data.connector.volume

_gb := 1000000000

_in(used, requested) := {"phase": "transfer", "usage": {"bytes": used}, "request": {"bytes": requested}}

_volume(limit) := {"leftOperand": "tdsc:volumeBytes", "operator": "lteq", "rightOperand": limit}

test_volume_within_limit if {
	r := volume.evaluate(_volume(_gb)) with input as _in(200000000, 300000000)
	r.ok
	r.text == "500 MB in total is within the agreed 1 GB"
}

test_volume_exactly_at_limit_is_allowed if {
	volume.evaluate(_volume(_gb)).ok with input as _in(400000000, 600000000)
}

test_volume_exceeded_first_transfer if {
	r := volume.evaluate(_volume(_gb)) with input as _in(0, 1200000000)
	not r.ok
	r.text == "requested 1.2 GB exceeds the agreed 1 GB"
}

test_volume_exceeded_with_prior_usage if {
	r := volume.evaluate(_volume(_gb)) with input as _in(800000000, 300000000)
	not r.ok
	r.text == "requested 300 MB on top of 800 MB already transferred (1.1 GB in total) exceeds the agreed 1 GB"
}

test_volume_already_used_up if {
	r := volume.evaluate(_volume(_gb)) with input as _in(1500000000, 0)
	not r.ok
	r.text == "1.5 GB already transferred exceeds the agreed 1 GB"
}

test_volume_exact_bytes_when_rounding_hides_the_difference if {
	r := volume.evaluate(_volume(_gb)) with input as _in(0, 1000400000)
	r.text == "requested 1000400000 B exceeds the agreed 1000000000 B"
}

test_volume_lt_at_limit_denied if {
	r := volume.evaluate({"leftOperand": "tdsc:volumeBytes", "operator": "lt", "rightOperand": _gb}) with input as _in(0, _gb)
	not r.ok
	r.text == "requested 1 GB exceeds the agreed limit of less than 1 GB"
}

test_missing_usage_counts_as_zero if {
	volume.evaluate(_volume(_gb)).ok with input as {"phase": "catalog"}
}

test_transfer_bytes if {
	c := {"leftOperand": "tdsc:transferBytes", "operator": "lteq", "rightOperand": 500000000}
	volume.evaluate(c).ok with input as _in(10 * _gb, 500000000)
	r := volume.evaluate(c) with input as _in(0, 750000000)
	not r.ok
	r.text == "requested 750 MB per transfer exceeds the agreed 500 MB per transfer"
}

test_records if {
	c := {"leftOperand": "tdsc:volumeRecords", "operator": "lteq", "rightOperand": 1000}
	volume.evaluate(c).ok with input as {"usage": {"records": 400}, "request": {"records": 600}}
	r := volume.evaluate(c) with input as {"usage": {"records": 800}, "request": {"records": 500}}
	not r.ok
	r.text == "requested 500 records on top of 800 already delivered (1300 in total) exceeds the agreed 1000 records"
	r1 := volume.evaluate(c) with input as {"request": {"records": 1001}}
	r1.text == "requested 1001 records exceeds the agreed 1000 records"
}

test_invalid_limit if {
	r := volume.evaluate(_volume("1 GB")) with input as _in(0, 0)
	not r.ok
	r.text == "limit for tdsc:volumeBytes must be a non-negative number, got '1 GB'"
}

test_unsupported_operator if {
	r := volume.evaluate({"leftOperand": "tdsc:volumeBytes", "operator": "gt", "rightOperand": 1}) with input as _in(0, 0)
	r.text == "operator 'gt' is not supported for leftOperand 'tdsc:volumeBytes'"
}

test_remaining_bytes if {
	volume.remaining(_volume(_gb)) == {"bytes": 700000000} with input as _in(300000000, 5)
	volume.remaining({"leftOperand": "tdsc:volumeBytes", "operator": "lt", "rightOperand": 1000}) == {"bytes": 999} with input as _in(0, 0)
	volume.remaining(_volume(_gb)) == {"bytes": 0} with input as _in(3 * _gb, 0)
	volume.remaining({"leftOperand": "tdsc:transferBytes", "operator": "lteq", "rightOperand": 5000}) == {"bytes": 5000} with input as _in(3 * _gb, 0)
	volume.remaining({"leftOperand": "tdsc:volumeRecords", "operator": "lteq", "rightOperand": 10}) == {"records": 6} with input as {"usage": {"records": 4}}
}

# --- a transfer that cannot fit in the volume left is refused up front --------------------

_vol := {"leftOperand": "tdsc:volumeBytes", "operator": "lteq", "rightOperand": 10000000}

test_a_dataset_larger_than_the_volume_left_is_refused_with_what_is_left if {
	inp := {"phase": "transfer", "usage": {"bytes": 6360000}, "request": {"bytes": 0, "dataset_bytes": 6360000}}
	volume.evaluate(_vol) == {"ok": false, "text": "the agreement's volume has 3.64 MB of the agreed 10 MB left; this dataset is 6.36 MB"} with input as inp
}

test_a_dataset_that_fits_is_allowed if {
	inp := {"phase": "transfer", "usage": {"bytes": 3640000}, "request": {"bytes": 0, "dataset_bytes": 6360000}}
	volume.evaluate(_vol).ok with input as inp
}

test_nothing_left_names_it if {
	inp := {"phase": "transfer", "usage": {"bytes": 10000000}, "request": {"bytes": 0, "dataset_bytes": 5}}
	volume.evaluate(_vol).text == "the agreement's volume has 0 B of the agreed 10 MB left; this dataset is 5 B" with input as inp
}

test_the_dataset_size_counts_only_at_phase_transfer if {
	inp := {"phase": "stream", "usage": {"bytes": 6360000}, "request": {"bytes": 0, "dataset_bytes": 6360000}}
	volume.evaluate(_vol).ok with input as inp
}

test_the_per_transfer_limit_still_cuts_rather_than_refuses if {
	per := {"leftOperand": "tdsc:transferBytes", "operator": "lteq", "rightOperand": 1000}
	inp := {"phase": "transfer", "request": {"bytes": 0, "dataset_bytes": 5000}}
	volume.evaluate(per).ok with input as inp
	volume.remaining(per) == {"bytes": 1000} with input as inp
}
