# Conductor's default export gate (Rego v1). Every reason to refuse is a
# `deny` entry; missing input fails closed; the export is allowed only when
# nothing denies it.
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

deny contains "missing_input" if not input.dataset

deny contains "missing_input" if not input.request

deny contains sprintf("missing_field:dataset.%s", [f]) if {
	some f in required_dataset
	not f in object.keys(object.get(input, "dataset", {}))
}

deny contains sprintf("missing_field:request.%s", [f]) if {
	some f in required_request
	not f in object.keys(object.get(input, "request", {}))
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
