// Capacitor bundles and APKs of this app id (GET /api/capacitor/<appId>/versions): per channel the
// version devices are offered and the history, and the published APKs. An Expo-only app has none:
// the panel then hides itself.
import { api, ApiError } from "../api";
import { h } from "../dom";
import { registerPanel } from "./registry";

interface Bundle {
  version: string;
  checksum: string;
  size: number;
  minNativeVersion?: string;
  publishedAt: string;
}
interface Channel {
  id: number;
  public?: boolean;
  allowSelfSet?: boolean;
  current?: string;
  versions?: Bundle[];
}
interface Apk {
  version: string;
  sha256: string;
  size: number;
  publishedAt: string;
}
interface Listing {
  defaultChannel?: string;
  channels?: Record<string, Channel>;
  apk?: Record<string, Apk[]>;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function table(head: string[], rows: HTMLElement[], testid: string): HTMLElement {
  return h("table", { "data-testid": testid }, h("thead", {}, h("tr", {}, ...head.map((t) => h("th", {}, t)))), h("tbody", {}, ...rows));
}

registerPanel({
  id: "capacitor",
  title: "Capacitor bundles and APKs",
  order: 50,
  async render(ctx, el) {
    const section = el.parentElement;
    let listing: Listing | undefined;
    try {
      listing = await api<Listing>("GET", `/api/capacitor/${encodeURIComponent(ctx.slug)}/versions`);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
    const channels = Object.entries(listing?.channels ?? {});
    const apks = Object.entries(listing?.apk ?? {}).filter(([, list]) => list.length > 0);
    if (channels.length === 0 && apks.length === 0) {
      if (section) section.hidden = true;
      return;
    }
    if (section) section.hidden = false;
    for (const [name, c] of channels) {
      const flags = [name === listing?.defaultChannel ? "default" : "", c.public ? "public" : "", c.allowSelfSet ? "self-set" : ""].filter(Boolean);
      const rows = [...(c.versions ?? [])].reverse().map((b) =>
        h(
          "tr",
          { "data-testid": "capacitor-version", class: b.version === c.current ? "current" : undefined },
          h("td", {}, b.version, b.version === c.current ? h("span", { class: "badge on" }, "current") : null),
          h("td", { class: "id", title: b.checksum }, b.checksum.slice(0, 12)),
          h("td", {}, bytes(b.size)),
          h("td", {}, b.publishedAt, b.minNativeVersion ? ` · native ≥ ${b.minNativeVersion}` : ""),
        ),
      );
      el.append(
        h("h4", { "data-testid": "capacitor-channel", "data-channel": name }, `channel ${name}`, ...flags.map((f) => h("span", { class: "badge" }, f))),
        h("p", {}, "Devices are offered ", h("code", { "data-testid": "capacitor-current" }, c.current ?? "nothing"), "."),
        rows.length ? table(["version", "checksum", "size", "published"], rows, "capacitor-history") : h("p", { class: "muted" }, "No versions."),
      );
    }
    for (const [name, list] of apks) {
      const rows = [...list].reverse().map((a) =>
        h("tr", { "data-testid": "apk-row" }, h("td", {}, a.version), h("td", { class: "id", title: a.sha256 }, a.sha256.slice(0, 12)), h("td", {}, bytes(a.size)), h("td", {}, a.publishedAt)),
      );
      el.append(h("h4", {}, `APKs · channel ${name}`), table(["version", "sha256", "size", "published"], rows, "apk-table"));
    }
  },
});
