# A tenant's export gate (Rego v1): the built-in one, in force until the
# tenant publishes its own (POST /v1/policies). The platform floor
# (platform.rego) has already judged every export by the seed's rules,
# residency, retirement and contract status, and its denials stand whatever
# this policy says; a tenant's gate can only add reasons to refuse. This one
# adds none. A gate of your own looks like this (one `deny` entry per reason):
#
#   package conductor.export
#   import rego.v1
#   deny contains "no_exports_to_uk" if input.request.destination_region == "UK"
#   default allow := false
#   allow if count(deny) == 0
#   decision := {"allow": allow, "deny": sort(deny)}
#
# Its input is the document the floor sees: input.dataset (id, version, name,
# license, purposes, region, retention, status, contract_status,
# contract_version, columns: {name: classification}) and input.request
# (purpose, preset, destination_region, requester). A published gate runs in a
# confined worker with CPU, memory and time limits, and may not call builtins
# that read the clock, randomness or the network (decisions are replayed).
package conductor.export

import rego.v1

decision := {"allow": true, "deny": []}
