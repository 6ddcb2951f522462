# Billing evidence: a consumer that refused metering windows, or left them without a receipt
# past the provider's deadline, is refused new transfers once more windows are in dispute than
# the provider allows (docs/metering.md). The connector computes the facts:
#   input.usage.disputed_windows       [{"seq": 3, "transfer": "urn:...", "why": "no receipt" | "refused"}]
#                                      (the first 20)
#   input.usage.disputed_window_count  how many there are in all (the list's length if absent)
#   input.usage.max_disputed_windows   how many the provider tolerates (metering_max_disputed_windows)
package connector.metering

import data.connector.util

_disputed := ws if {
	ws := input.usage.disputed_windows
	is_array(ws)
} else := []

_count := n if {
	n := input.usage.disputed_window_count
	is_number(n)
} else := count(_disputed)

_allowed := n if {
	n := input.usage.max_disputed_windows
	is_number(n)
} else := 0

# reasons: one sentence naming the disputed windows, at phase transfer only (a transfer
# already under way is not cut; the next one is refused).
reasons := [] if {
	input.phase != "transfer"
} else := [] if {
	_count <= _allowed
} else := [util.cat([
	"metering ", _windows_noun, " ", concat(", ", [_window_text(w) | some w in _disputed]),
	_more, " of this agreement ", _verb, " disputed (refused by the consumer or without its receipt",
	" past the deadline); at most ", util.plural(_allowed, "disputed window"),
	" allowed before new transfers: send the receipts first",
])]

_windows_noun := "window" if _count == 1

else := "windows"

_verb := "is" if _count == 1

else := "are"

_more := util.cat([" and ", util.number_text(_count - count(_disputed)), " more"]) if {
	_count > count(_disputed)
} else := ""

_window_text(w) := util.cat(["record ", util.number_text(w.seq), " (", _why(w), ")"])

_why(w) := w.why if is_string(w.why)

else := "disputed"
