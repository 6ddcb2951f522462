# An example of an operator's own rule (policies/README.md, "Your own rules"): refuse named
# consumers everywhere, whatever the offer says. Edit the list, or copy this file for another
# rule; each file here needs its tests next to it (example_test.rego), which must pass before
# the connector loads a change.
package local.example

# DIDs this connector serves nothing (an empty list refuses no one)
blocked_consumers := {"did:web:refused.example.invalid"}

deny contains reason if {
	input.consumer.id in blocked_consumers
	reason := concat("", ["consumer ", input.consumer.id, " is blocked by the operator"])
}

# A second pattern: classifications served only during working hours (UTC). Empty as
# shipped, so it refuses nothing until an operator names one, e.g. {"important"}.
working_hours_only := set()

deny contains reason if {
	input.phase == "transfer"
	input.dataset.classification in working_hours_only
	reason := concat("", [input.dataset.classification, " data is served only between 06:00 and 20:00 UTC"])
	hour := to_number(substring(input.now, 11, 2))
	not _working_hour(hour)
}

_working_hour(hour) if {
	hour >= 6
	hour < 20
}
