"""`conductor autopilot simulate`: what the autopilot does, and why, in fast time."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli.progress import Progress

if TYPE_CHECKING:
    import argparse

    from api.settings import Settings
    from api.tools.autopilot_sim import Timeline
    from application.autopilot.actions import Action


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    import structlog  # noqa: PLC0415

    from api.tools.autopilot_sim import SCENARIOS, START, simulate  # noqa: PLC0415

    # The controller's own log lines would bury the timeline: warnings only.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    scenario = SCENARIOS[args.scenario]
    workdir = Path(args.workdir or settings.var_path / "autopilot-sim")

    # simulated seconds of the scenario, on stderr (stdout: actions or JSON)
    bar = Progress(f"simulating {scenario.name}", scenario.duration_s, unit="sim s")

    def progress(done: float, actions: list[Action]) -> None:
        bar.update(round(done * scenario.duration_s))
        if args.json:
            return
        for action in actions:
            print(
                f"{_clock(action.at_s - START)}  {action.tenant:<10} "
                f"{action.kind:<17} {action.reason}",
                flush=True,
            )

    if not args.json:
        print(f"scenario {scenario.name}: {scenario.description}", flush=True)
    timeline = simulate(scenario, workdir, speed=args.speed, progress=progress)
    bar.finish(scenario.duration_s)
    chart = Path(args.png or workdir / f"{scenario.name}.png")
    write_chart(timeline, chart)
    if args.json:
        document = timeline.to_json()
        document["chart"] = str(chart)
        print(json.dumps(document, indent=2))
        return 0
    print(_summary(timeline))
    print(f"chart: {chart}")
    return 0


def _summary(timeline: Timeline) -> str:
    last = timeline.samples[-1]["tenants"] if timeline.samples else {}
    lines = [
        "",
        f"{'tenant':<10} {'spent':>10} {'cap':>10} {'shaped rps':>10} "
        f"{'throttled':>10}",
    ]
    throttled: dict[str, float] = {}
    for sample in timeline.samples:
        for tenant, data in sample["tenants"].items():
            throttled[tenant] = throttled.get(tenant, 0.0) + data["throttledRps"]
    for tenant, data in last.items():
        shaped = data["shapedRps"]
        cap = data["capUnits"]
        lines.append(
            f"{tenant:<10} {data['spentUnits']:>10.0f} "
            f"{'-' if cap >= 1e9 else f'{cap:.0f}':>10} "
            f"{'-' if shaped is None else f'{shaped:.1f}':>10} "
            f"{throttled.get(tenant, 0.0) * timeline.interval_s:>10.0f}"
        )
    lines.append(
        f"{len(timeline.actions)} actions in {timeline.wall_s:.1f} s wall time"
    )
    return "\n".join(lines)


def write_chart(timeline: Timeline, path: Path) -> None:
    """Offered vs served rate, SLO burn (1 h) and spend per tenant, with actions."""
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    hours = [s["t"] / 3600 for s in timeline.samples]
    tenants = list(timeline.samples[0]["tenants"]) if timeline.samples else []
    fig, (rates, burn, spend) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    for tenant in tenants:
        series = [s["tenants"][tenant] for s in timeline.samples]
        line = rates.plot(hours, [d["offeredRps"] for d in series], lw=0.8, ls=":")[0]
        rates.plot(
            hours,
            [d["servedRps"] for d in series],
            lw=1.4,
            color=line.get_color(),
            label=f"{tenant} served (dotted: offered)",
        )
        burn.plot(hours, [max(d["sloBurn1h"], 1e-3) for d in series], label=tenant)
        spend.plot(hours, [d["spentUnits"] for d in series], label=f"{tenant} spent")
    burn.axhline(14.4, color="red", ls="--", lw=0.8, label="page (14.4x, 1 h & 5 m)")
    burn.axhline(6.0, color="red", ls=":", lw=0.8, label="page (6x, 6 h & 30 m)")
    burn.axhline(1.0, color="orange", ls="--", lw=0.8, label="ticket (1x)")
    burn.set_yscale("log")
    _actions(timeline, (rates, burn, spend))
    rates.set_ylabel("requests/s")
    burn.set_ylabel("SLO burn, 1 h")
    spend.set_ylabel("units this period")
    spend.set_xlabel("hours")
    for axis in (rates, burn, spend):
        axis.legend(fontsize=7, loc="upper right")
        axis.grid(alpha=0.3)
    rates.set_title(f"autopilot simulate --scenario {timeline.scenario}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _actions(timeline: Timeline, axes: tuple[Any, ...]) -> None:
    from api.tools.autopilot_sim import START  # noqa: PLC0415

    colours = {
        "shaping-engaged": "crimson",
        "shaping-released": "green",
        "cap-adjusted": "purple",
        "cap-lifted": "teal",
    }
    for action in timeline.actions:
        colour = colours.get(action.kind)
        if colour is None:
            continue
        at = (action.at_s - START) / 3600
        for axis in axes:
            axis.axvline(at, color=colour, lw=0.8, alpha=0.7)
        axes[0].annotate(
            f"{action.kind} {action.tenant}",
            (at, axes[0].get_ylim()[1]),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
            color=colour,
        )


def add_commands(sub: Any) -> None:
    """Register `conductor autopilot simulate` on the `conductor` parser."""
    from api.tools.autopilot_sim import SCENARIOS  # noqa: PLC0415

    autopilot = sub.add_parser("autopilot", help="cost/SLO autopilot").add_subparsers(
        dest="action", required=True
    )
    sim = autopilot.add_parser(
        "simulate", help="synthetic traffic against the real controller"
    )
    sim.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        required=True,
        help=f"one of {', '.join(sorted(SCENARIOS))} (docs/autopilot.md)",
    )
    sim.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="simulated seconds per real second (default 0: as fast as it runs)",
    )
    sim.add_argument("--json", action="store_true", help="timeline and actions")
    sim.add_argument("--png", help="chart path (default: <workdir>/<scenario>.png)")
    sim.add_argument("--workdir", help="default: $CONDUCTOR_VAR/autopilot-sim")
    sim.set_defaults(func=cmd_simulate, store=False)  # its own workdir
