// Adoption and failures per update (GET /api/health): devices launched and failed, the failure
// rate with its Wilson 95 % interval as a small bar, the top fatal error, and whether the update
// was halted (by whom and why). Capacitor versions appear under runtime "capacitor".
import { api } from "../api";
import { h, empty } from "../dom";
import { registerPanel } from "./registry";

interface HealthUpdate {
  platform: string;
  runtimeVersion: string;
  channel: string;
  updateId: string;
  launched: number;
  launchedEstimated?: boolean;
  failed: number;
  failedEstimated?: boolean;
  failureRate?: number;
  failureRateInterval?: [number, number];
  topFatalErrors?: { text: string; count: number }[];
  rolloutPercentage?: number;
  halt?: { at: string; reason: string; by: string; error?: string };
}

interface HealthReport {
  updates?: HealthUpdate[];
}

export function pct(x: number): string {
  const p = x * 100;
  return `${p < 10 && p > 0 ? p.toFixed(1) : Math.round(p)} %`;
}

/** A bar as wide as the failure rate, with the interval as a lighter band; widths set through
 * the CSSOM (allowed by the CSP, unlike a style attribute). */
function bar(u: HealthUpdate): HTMLElement {
  const band = h("span", { class: "bar-band" });
  const fill = h("span", { class: "bar-fill" });
  const [lo, hi] = u.failureRateInterval ?? [0, 0];
  band.style.left = `${Math.min(100, lo * 100)}%`;
  band.style.width = `${Math.max(0, Math.min(100, (hi - lo) * 100))}%`;
  fill.style.width = `${Math.min(100, (u.failureRate ?? 0) * 100)}%`;
  return h("span", { class: u.halt ? "bar halted" : "bar", "aria-hidden": "true" }, band, fill);
}

function count(n: number, estimated?: boolean): string {
  return `${estimated ? "~" : ""}${n}`;
}

registerPanel({
  id: "health",
  title: "Adoption and failures",
  order: 40,
  async render(ctx, el) {
    const report = await api<HealthReport>("GET", `/api/health?slug=${encodeURIComponent(ctx.slug)}`);
    const updates = report?.updates ?? [];
    if (updates.length === 0) {
      el.append(
        empty(
          "No health data yet. Devices report launches and failures in the headers of their update checks; counts appear here once devices running a published update check in. The same report in a terminal:",
          `publish-cli health --server ${location.origin} --slug ${ctx.slug}`,
        ),
      );
      return;
    }
    // One table per platform / runtime / channel, so that a row fits a phone.
    const groups = new Map<string, HealthUpdate[]>();
    for (const u of updates) {
      const key = `${u.platform} · runtime ${u.runtimeVersion} · ${u.channel}`;
      groups.set(key, [...(groups.get(key) ?? []), u]);
    }
    for (const [title, list] of groups) {
      const rows = list.flatMap((u) => {
        const rate =
          u.failureRate === undefined
            ? "—"
            : `${pct(u.failureRate)}${u.failureRateInterval ? ` (${pct(u.failureRateInterval[0])}–${pct(u.failureRateInterval[1])})` : ""}`;
        const fatal = u.topFatalErrors?.[0];
        const row = h(
          "tr",
          {
            "data-testid": "health-row",
            "data-update-id": u.updateId,
            "data-platform": u.platform,
            "data-runtime": u.runtimeVersion,
            "data-channel": u.channel,
            class: u.halt ? "halted" : undefined,
          },
          h("td", { class: "id", title: u.updateId, "data-testid": "health-update-id" }, u.updateId.slice(0, 8)),
          h("td", { "data-testid": "health-launched" }, count(u.launched, u.launchedEstimated)),
          h("td", { "data-testid": "health-failed" }, count(u.failed, u.failedEstimated)),
          h("td", { "data-testid": "health-rate" }, h("div", {}, rate), bar(u)),
          h(
            "td",
            { "data-testid": "health-halt" },
            u.halt
              ? h("span", {}, h("span", { class: "badge warn" }, "halted"), ` by ${u.halt.by}: ${u.halt.reason}`, u.halt.error ? ` (${u.halt.error})` : "")
              : u.rolloutPercentage !== undefined
                ? `rollout ${u.rolloutPercentage} %`
                : "—",
          ),
        );
        const more = fatal
          ? h("tr", { class: "sub" }, h("td", { colspan: "5", class: "message meta", "data-testid": "health-fatal" }, `top fatal error (×${fatal.count}): ${fatal.text}`))
          : null;
        return more ? [row, more] : [row];
      });
      el.append(
        h("h4", {}, title),
        h(
          "table",
          { "data-testid": "health-table" },
          h("thead", {}, h("tr", {}, ...["update", "launched", "failed", "failure rate (95 %)", "halt"].map((t) => h("th", {}, t)))),
          h("tbody", {}, ...rows),
        ),
      );
    }
  },
});
