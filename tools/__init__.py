"""tools: offline tooling (the locomotion experts' training, the speed benchmark, the CI baseline, the
collectors' success rate). It may import agents, envs and harness; none of them imports tools."""
