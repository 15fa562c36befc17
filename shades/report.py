"""The day's plan for people: a text table, the SPEC's JSON (planner.plan_json) and a PNG."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

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
    """One panel per group: façade irradiance (area), position (step line), moves marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(plans), 1, figsize=(11, 2.6 * len(plans) + 0.6), sharex=True, squeeze=False)
    for ax, plan in zip(axes[:, 0], plans, strict=True):
        times = [s.time.astimezone(tz) for s in plan.steps]
        ax.fill_between(times, [s.poa_wm2 for s in plan.steps], color="#f2b632", alpha=0.45, step="post",
                        label="façade irradiance (W/m²)")
        ax.set_ylabel("W/m²")
        ax.set_ylim(0, max(100.0, max((s.poa_wm2 for s in plan.steps), default=0) * 1.15))
        right = ax.twinx()
        right.step(times, [s.position for s in plan.steps], where="post", color="#1f4e79", lw=2,
                   label="position (% down)")
        for step in plan.steps:
            if step.moved:
                right.axvline(step.time.astimezone(tz), color="#1f4e79", ls=":", lw=1)
        right.set_ylim(-5, 105)
        right.set_ylabel("% down")
        ax.set_title(f"{plan.group} ({plan.facade_azimuth:g}°) - {plan.moves} move(s), "
                     f"avoided {plan.avoided_gain_kwh:.2f} kWh", loc="left", fontsize=10)
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8)
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    fig.suptitle(f"Shading plan {day.isoformat()} (weather: {weather_source})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
