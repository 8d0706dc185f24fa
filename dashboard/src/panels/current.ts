// What each platform / runtime / channel serves now.
import { h, empty } from "../dom";
import { registerPanel } from "./registry";

registerPanel({
  id: "current",
  title: "Served now",
  order: 10,
  render(ctx, el) {
    const rows: HTMLElement[] = [];
    for (const rt of ctx.updates) {
      for (const u of rt.updates.filter((u) => u.current)) {
        rows.push(
          h(
            "tr",
            { "data-testid": "current-row" },
            h("td", {}, rt.platform),
            h("td", {}, rt.runtimeVersion),
            h("td", {}, u.channel),
            h("td", { class: "id", "data-testid": "current-id" }, u.kind === "update" ? u.id : u.kind),
            h("td", {}, u.createdAt),
          ),
        );
      }
    }
    if (rows.length === 0) {
      el.append(
        empty(
          "Nothing is published for this app yet. Publish your first update with:",
          `npx expo export && publish-cli publish --server ${location.origin} --slug ${ctx.slug} --export-dir dist`,
        ),
      );
      return;
    }
    el.append(
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, h("th", {}, "platform"), h("th", {}, "runtime"), h("th", {}, "channel"), h("th", {}, "update"), h("th", {}, "created"))),
        h("tbody", {}, ...rows),
      ),
    );
  },
});
