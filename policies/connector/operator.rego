# The operator's own rules (policies/local/): any package `local.<name>` may define
#   deny contains reason if { ... }
# with one text per refusal; every such reason denies, at every phase the rule matches.
# The library never needs a change for it (policies/README.md, "Your own rules").
package connector.operator

reasons := [r |
	some name
	some r in data.local[name].deny
	is_string(r)
]
