# Volume: bytes and records, per transfer and over the agreement's life.
#   tdsc:volumeBytes    usage.bytes + request.bytes      (bytes over the agreement's life)
#   tdsc:transferBytes  request.bytes                    (bytes per transfer)
#   tdsc:volumeRecords  usage.records + request.records  (records over the agreement's life)
# At phase transfer, request.dataset_bytes (the dataset's size, when the provider knows it)
# makes a transfer that cannot fit in the agreement's volume left a refusal up front, rather
# than a copy cut short. (tdsc:transferBytes still cuts: it caps each transfer.)
package connector.volume

import data.connector.util

operands := {"tdsc:volumeBytes", "tdsc:transferBytes", "tdsc:volumeRecords"}

operators := {"lteq", "lt"}

used_bytes := _number(input, ["usage", "bytes"])

requested_bytes := _number(input, ["request", "bytes"])

used_records := _number(input, ["usage", "records"])

# the size of the dataset a transfer request asks for, when known (phase transfer)
dataset_bytes := n if {
	input.phase == "transfer"
	n := input.request.dataset_bytes
	is_number(n)
	n >= 0
}

requested_records := _number(input, ["request", "records"])

_number(doc, path) := n if {
	n := object.get(doc, path, 0)
	is_number(n)
} else := 0

# evaluate(c) is {"ok", "text"} for an atomic constraint on a volume leftOperand.
evaluate(c) := util.unsupported(c) if {
	not c.operator in operators
} else := util.fail(util.cat(["limit for ", c.leftOperand, " must be a non-negative number, got ", util.quoted(c.rightOperand)])) if {
	not _valid_limit(c.rightOperand)
} else := _evaluate(c.leftOperand, c.operator, c.rightOperand)

_valid_limit(r) if {
	is_number(r)
	r >= 0
}

_within("lteq", n, limit) if n <= limit

_within("lt", n, limit) if n < limit

_ok(op, n, limit) if _within(op, n, limit)

else := false

# the agreed limit in words: "1 GB", or "less than 1 GB"
_agreed("lteq", t) := util.cat(["the agreed ", t])

_agreed("lt", t) := util.cat(["the agreed limit of less than ", t])

_evaluate("tdsc:volumeBytes", op, limit) := util.fail(text) if {
	size := dataset_bytes
	not _ok(op, used_bytes + size, limit)
	pair := util.format_bytes_pair(util.non_negative(_cap(op, limit) - used_bytes), size)
	text := util.cat([
		"the agreement's volume has ", pair[0], " of ", _agreed(op, util.format_bytes(limit)),
		" left; this dataset is ", pair[1],
	])
} else := util.result(_ok(op, total, limit), text) if {
	total := used_bytes + requested_bytes
	text := _bytes_text(_ok(op, total, limit), op, total, limit)
}

_evaluate("tdsc:transferBytes", op, limit) := util.result(_ok(op, requested_bytes, limit), text) if {
	pair := util.format_bytes_pair(requested_bytes, limit)
	text := _per_transfer_text(_ok(op, requested_bytes, limit), op, pair)
}

_evaluate("tdsc:volumeRecords", op, limit) := util.result(_ok(op, total, limit), text) if {
	total := used_records + requested_records
	text := _records_text(_ok(op, total, limit), op, total, limit)
}

_bytes_text(true, op, total, limit) := util.cat([pair[0], " in total is within ", _agreed(op, pair[1])]) if {
	pair := util.format_bytes_pair(total, limit)
}

_bytes_text(false, op, total, limit) := util.cat(["requested ", pair[0], " exceeds ", _agreed(op, pair[1])]) if {
	used_bytes == 0
	pair := util.format_bytes_pair(total, limit)
}

_bytes_text(false, op, _, limit) := util.cat([util.format_bytes(used_bytes), " already transferred exceeds ", _agreed(op, pair[1])]) if {
	used_bytes != 0
	requested_bytes == 0
	pair := util.format_bytes_pair(used_bytes, limit)
}

_bytes_text(false, op, total, limit) := util.cat([
	"requested ", util.format_bytes(requested_bytes), " on top of ", util.format_bytes(used_bytes),
	" already transferred (", pair[0], " in total) exceeds ", _agreed(op, pair[1]),
]) if {
	used_bytes != 0
	requested_bytes != 0
	pair := util.format_bytes_pair(total, limit)
}

_per_transfer_text(true, op, pair) := util.cat([pair[0], " per transfer is within ", _agreed(op, pair[1]), " per transfer"])

_per_transfer_text(false, op, pair) := util.cat(["requested ", pair[0], " per transfer exceeds ", _agreed(op, pair[1]), " per transfer"])

_records(n) := util.plural(n, "record")

_records_text(true, op, total, limit) := util.cat([_records(total), " in total is within ", _agreed(op, _records(limit))])

_records_text(false, op, total, limit) := util.cat(["requested ", _records(total), " exceeds ", _agreed(op, _records(limit))]) if {
	used_records == 0
}

_records_text(false, op, _, limit) := util.cat([_records(used_records), " already delivered exceeds ", _agreed(op, _records(limit))]) if {
	used_records != 0
	requested_records == 0
}

_records_text(false, op, total, limit) := util.cat([
	"requested ", _records(requested_records), " on top of ", util.number_text(used_records),
	" already delivered (", util.number_text(total), " in total) exceeds ", _agreed(op, _records(limit)),
]) if {
	used_records != 0
	requested_records != 0
}

# --- limits ------------------------------------------------------------------------------

# remaining(c) is what a volume constraint still allows: {"bytes": n} or {"records": n}
# (never negative). The data plane stops a transfer when it reaches the bytes.
remaining(c) := {"bytes": util.non_negative(_cap(c.operator, c.rightOperand) - used_bytes)} if {
	c.leftOperand == "tdsc:volumeBytes"
	c.operator in operators
	_valid_limit(c.rightOperand)
}

remaining(c) := {"bytes": util.non_negative(_cap(c.operator, c.rightOperand))} if {
	c.leftOperand == "tdsc:transferBytes"
	c.operator in operators
	_valid_limit(c.rightOperand)
}

remaining(c) := {"records": util.non_negative(_cap(c.operator, c.rightOperand) - used_records)} if {
	c.leftOperand == "tdsc:volumeRecords"
	c.operator in operators
	_valid_limit(c.rightOperand)
}

# the largest whole amount a limit allows
_cap("lteq", limit) := floor(limit)

_cap("lt", limit) := ceil(limit) - 1
