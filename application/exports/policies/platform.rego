# Conductor's platform floor for exports (Rego v1): the seed's rules (no
# Embargoed license, the purpose must be one the dataset allows, a DLP preset
# is never "none"; ADR-036: no proof, no export) plus residency, retirement
# and an active contract. It is evaluated on every export before the tenant's
# own gate, and a tenant's policy can add denials but never remove one of
# these. Every reason to refuse is a `deny` entry; missing input fails closed;
# the floor allows only when nothing denies.
package conductor.export

import rego.v1

# Destination regions each dataset region may be exported to (residency).
residency := {
	"US": {"US"},
	"EU": {"EU"},
	"UK": {"UK", "EU"},
}

required_dataset := {"license", "purposes", "region", "status", "contract_status"}

required_request := {"purpose", "preset", "destination_region"}

# Not an object (absent, null, a string...) is missing: every rule below
# reads fields of these two, and an undefined read must never allow.
deny contains "missing_input" if not is_object(input.dataset)

deny contains "missing_input" if not is_object(input.request)

# Key sets computed once, then one set difference per part (a per-field
# object.keys() made these two rules half the evaluation time).
dataset_keys := object.keys(input.dataset)

request_keys := object.keys(input.request)

deny contains concat("", ["missing_field:dataset.", f]) if {
	some f in required_dataset - dataset_keys
}

deny contains concat("", ["missing_field:dataset.", f]) if {
	not is_object(input.dataset)
	some f in required_dataset
}

deny contains concat("", ["missing_field:request.", f]) if {
	some f in required_request - request_keys
}

deny contains concat("", ["missing_field:request.", f]) if {
	not is_object(input.request)
	some f in required_request
}

deny contains "license_embargoed" if input.dataset.license == "Embargoed"

deny contains "purpose_not_permitted" if {
	input.request.purpose
	not input.request.purpose in input.dataset.purposes
}

deny contains "dlp_preset_none" if input.request.preset == "none"

deny contains "residency_violation" if {
	input.request.destination_region
	not input.request.destination_region in object.get(residency, input.dataset.region, set())
}

deny contains "dataset_retired" if input.dataset.status == "retired"

deny contains "contract_not_active" if {
	input.dataset.contract_status
	input.dataset.contract_status != "active"
}

default allow := false

allow if count(deny) == 0

decision := {"allow": allow, "deny": sort(deny)}
