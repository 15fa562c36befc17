"""For people: the day's plan (a text table, the SPEC's JSON in planner.plan_json, a PNG) and the
rooms learnt from the building (`esus shades rooms`)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from shades.identify import RoomFit
from shades.planner import GroupPlan


def plan_text(plans: list[GroupPlan], day: date, weather_source: str, tz: ZoneInfo) -> str:
    lines = [f"Shading plan for {day.isoformat()} (weather: {weather_source})"]
    for plan in plans:
        lines.append("")
        air = plan.hours["air_c"] if not plan.hours.empty else None
        rooms = (f"; room model {air.min():.1f}-{air.max():.1f} °C, cooling {plan.cooling_kwh:.2f} kWh, "
                 f"heating {plan.heating_kwh:.2f} kWh") if air is not None else ""
        lines.append(f"{plan.group} (façade {plan.facade_azimuth:g}°): {plan.moves} move(s), "
                     f"avoided gain {plan.avoided_gain_kwh:.2f} kWh{rooms}")
        if plan.sun is not None:   # the window the policy works with: from the first sunlit step to the end of the last
            peak = max(s.poa_wm2 for s in plan.steps if s.sun_on_facade)
            lines.append(f"  sun on the façade {plan.sun.start.astimezone(tz):%H:%M}-"
                         f"{plan.sun.end.astimezone(tz):%H:%M}, peak {peak:.0f} W/m²")
        else:
            lines.append("  no sun on the façade")
        for step in plan.steps:
            if step.moved:
                lines.append(f"  {step.time.astimezone(tz):%H:%M}  -> {step.position:3.0f} %  {step.reason}")
    return "\n".join(lines)


def plan_plot(plans: list[GroupPlan], day: date, weather_source: str, tz: ZoneInfo, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig = plan_figure(plans, day, weather_source, tz)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plan_figure(plans: list[GroupPlan], day: date, weather_source: str, tz: ZoneInfo) -> Any:
    """Two panels per group: the façade's irradiance with the sun's window on it, the position and
    each move with its reason; below, the room temperature the plan expects hour by hour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 * len(plans), 1, figsize=(12, 4.6 * len(plans) + 0.6), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [2.2, 1] * len(plans)})
    for i, plan in enumerate(plans):
        ax, rooms = axes[2 * i, 0], axes[2 * i + 1, 0]
        times = [s.time.astimezone(tz) for s in plan.steps]
        if plan.sun is not None:
            ax.axvspan(plan.sun.start.astimezone(tz), plan.sun.end.astimezone(tz), color="#fff3c4", zorder=0,
                       label="sun on the façade")
        ax.fill_between(times, [s.poa_wm2 for s in plan.steps], color="#f2b632", alpha=0.45, step="post",
                        label="façade irradiance (W/m²)")
        ax.set_ylabel("W/m²")
        ax.set_ylim(0, max(100.0, max((s.poa_wm2 for s in plan.steps), default=0) * 1.15))
        right = ax.twinx()
        right.step(times, [s.position for s in plan.steps], where="post", color="#1f4e79", lw=2,
                   label="position (% down)")
        moved = [s for s in plan.steps if s.moved]
        for n, step in enumerate(moved):
            at = step.time.astimezone(tz)
            right.axvline(at, color="#1f4e79", ls=":", lw=1)
            late = at.hour >= 15   # the label to the left of the move, so it stays inside the day
            rise = 8 + 11 * (n % 3) if step.position < 50 else -12 - 11 * (n % 3)
            right.annotate(f"{at:%H:%M} {_short(step.reason)}", (at, step.position), fontsize=7, color="#1f4e79",
                           xytext=(-4 if late else 4, rise), textcoords="offset points",
                           ha="right" if late else "left",
                           bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
        right.set_ylim(-5, 105)
        right.set_ylabel("% down")
        ax.set_title(f"{plan.group} ({plan.facade_azimuth:g}°) - {plan.moves} move(s), avoided "
                     f"{plan.avoided_gain_kwh:.2f} kWh, cooling {plan.cooling_kwh:.2f} kWh, heating "
                     f"{plan.heating_kwh:.2f} kWh", loc="left", fontsize=10)
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
        if not plan.hours.empty:
            ends = [t.astimezone(tz) + timedelta(hours=1) for t in plan.hours.index]
            rooms.plot(ends, plan.hours["air_c"], color="#c0392b", lw=1.5, marker=".",
                       label="room temperature the plan expects (°C, at each hour's end)")
            rooms.legend(loc="upper left", fontsize=8)
        rooms.set_ylabel("°C")
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    axes[-1, 0].set_xlabel(f"local time ({tz.key})")
    fig.suptitle(f"Shading plan {day.isoformat()} (weather: {weather_source})")
    fig.tight_layout()
    return fig


def _short(reason: str, limit: int = 60) -> str:
    """A move's reason as a label: its first clause."""
    first = reason.split(";")[0].split(" (")[0]
    return first if len(first) <= limit else first[:limit - 1] + "…"


def rooms_text(names: dict[int, str], fits: dict[int, RoomFit], kept: dict[int, RoomFit]) -> str:
    """`esus shades rooms`: per group the fit on the newest record, and what the service runs on."""
    lines = []
    for number, name in names.items():
        fit = fits[number]
        mode = "the room forecast decides" if fit.validated else "the VDI 3813 rule decides"
        lines.append(f"{name}: {mode}: {fit.reason}")
        if fit.model is not None and fit.plant is not None:
            lines.append(f"  room: {fit.model.describe()}")
            lines.append(f"  plant: {fit.plant.describe()}")
            lines.append(f"  fitted on {fit.training_days} days, judged on the {fit.held_out_days} after; worst hour "
                         f"{fit.worst_at[:16].replace('T', ' ')}")
        service = kept.get(number)
        if service is None:
            lines.append("  the service: no fit kept yet (one is made each night at 01:30)")
        elif service.model is None:
            lines.append(f"  the service: the rule decides ({service.reason})")
        else:
            lines.append(f"  the service: {'the room forecast' if service.validated else 'the rule'} decides "
                         f"(fitted {service.fitted_at[:16].replace('T', ' ')}, {service.rmse_k:.2f} K)")
    return "\n".join(lines)


def rooms_plot(names: dict[int, str], fits: dict[int, RoomFit], out: Path) -> None:
    """One panel per group: the held-out days' room temperature, measured and modelled a day ahead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(names), 1, figsize=(11, 2.6 * len(names) + 0.6), squeeze=False)
    for ax, (number, name) in zip(axes[:, 0], names.items(), strict=True):
        fit = fits[number]
        if fit.held_out.empty:
            ax.text(0.01, 0.5, f"{name}: {fit.reason}", transform=ax.transAxes, fontsize=9, wrap=True)
            ax.set_axis_off()
            continue
        shown = fit.held_out
        ax.plot(shown.index, shown["measured_c"], color="#333333", lw=1.5, label="measured")
        ax.plot(shown.index, shown["modelled_c"], color="#c0392b", lw=1.5, ls="--", label="modelled a day ahead")
        ax.set_ylabel("°C")
        ax.set_title(f"{name}: {'validated' if fit.validated else 'not validated'}, RMSE {fit.rmse_k:.2f} K, "
                     f"worst hour {fit.worst_k:.1f} K", loc="left", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d", tz=shown.index.tz))
    fig.suptitle("Room temperature on the held-out days")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
