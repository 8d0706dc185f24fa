// The pages: sign in, apps, one app (its panels), API keys, members, audit log. Each renders into
// the main element from JSON API answers only.
import { api, can, roleOf, setCsrf, type Me } from "./api";
import { h, clear, loading, errorBox, empty } from "./dom";
import { allPanels, type RuntimeUpdates } from "./panels/registry";
import "./panels/index";

export type Go = (hash: string) => void;

export function signIn(main: HTMLElement, onDone: (me: Me) => void, note?: string): void {
  const login = h("input", { name: "login", autocomplete: "username", required: true, "data-testid": "login" }) as HTMLInputElement;
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, "data-testid": "password" }) as HTMLInputElement;
  const status = h("div", {});
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        status.replaceChildren(h("p", { class: "loading" }, "Signing in…"));
        try {
          const r = await api("POST", "/api/auth/login", { login: login.value.trim(), password: password.value });
          setCsrf(r.csrf);
          password.value = "";
          const me: Me = await api("GET", "/api/auth/me");
          onDone(me);
        } catch (err) {
          status.replaceChildren(errorBox((err as Error).message));
        }
      },
    },
    h("h2", {}, "Sign in"),
    note ? h("p", { class: "muted" }, note) : null,
    h("label", {}, "Login", login),
    h("label", {}, "Password", password),
    h("button", { type: "submit", "data-testid": "sign-in" }, "Sign in"),
    status,
  );
  clear(main).append(form);
  login.focus();
}

export function appsPage(main: HTMLElement, me: Me, go: Go): void {
  clear(main).append(h("h2", {}, "Apps"));
  if (me.apps.length === 0) {
    main.append(
      empty(
        me.user.admin
          ? "No apps are registered yet. Register one (you become its owner):"
          : "You are not a member of any app yet. Ask an app's owner to add you.",
        me.user.admin ? `curl -X POST ${location.origin}/api/apps -H 'authorization: Bearer $ADMIN_TOKEN' -d '{"slug":"demo-app","owner":"${me.user.login}"}'` : undefined,
      ),
    );
    return;
  }
  main.append(
    h("ul", { class: "apps" }, ...me.apps.map((a) =>
      h("li", {}, h("a", { href: `#/apps/${encodeURIComponent(a.slug)}`, "data-testid": "app-link" }, a.slug), h("span", { class: "badge" }, a.role)),
    )),
  );
}

function appNav(slug: string, me: Me, here: string): HTMLElement {
  const role = roleOf(me, slug);
  const link = (path: string, label: string) =>
    h("a", { href: `#/apps/${encodeURIComponent(slug)}${path}`, class: here === path ? "here" : "" }, label);
  return h("nav", { class: "tabs" }, link("", "Updates"), can.own(role) ? link("/keys", "API keys") : null, link("/members", "Members"), link("/audit", "Audit log"));
}

export async function appPage(main: HTMLElement, me: Me, slug: string): Promise<void> {
  const role = roleOf(me, slug);
  const render = async () => {
    clear(main).append(h("h2", {}, slug, " ", h("span", { class: "badge", "data-testid": "role" }, role ?? "no role")), appNav(slug, me, ""), loading("updates"));
    let updates: RuntimeUpdates[];
    try {
      updates = (await api("GET", `/api/updates?slug=${encodeURIComponent(slug)}`)).runtimes;
    } catch (e) {
      main.lastChild?.remove();
      main.append(errorBox((e as Error).message));
      return;
    }
    main.lastChild?.remove();
    for (const p of allPanels()) {
      const body = h("div", { class: "panel-body" });
      main.append(h("section", { class: "card panel", "data-panel": p.id }, h("h3", {}, p.title), body));
      try {
        await p.render({ slug, me, role, updates, refresh: () => void render() }, body);
      } catch (e) {
        body.append(errorBox((e as Error).message));
      }
    }
  };
  await render();
}

export async function keysPage(main: HTMLElement, me: Me, slug: string): Promise<void> {
  const base = `/api/apps/${encodeURIComponent(slug)}/keys`;
  const list = h("div", {});
  const shown = h("div", {});
  const name = h("input", { name: "name", required: true, placeholder: "ci-publish", "data-testid": "key-name" }) as HTMLInputElement;
  const scopes = ["publish", "rollback", "delete", "read"].map((s) =>
    h("label", { class: "inline" }, h("input", { type: "checkbox", value: s, checked: s === "publish" || s === "read" }), s),
  );
  const refresh = async () => {
    list.replaceChildren(loading("API keys"));
    try {
      const keys: any[] = (await api("GET", base)).keys;
      if (keys.length === 0) {
        list.replaceChildren(empty("No API keys yet. Create one for CI above; its secret is shown once."));
        return;
      }
      list.replaceChildren(
        h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "name"), h("th", {}, "scopes"), h("th", {}, "state"), h("th", {}, "last used"), h("th", {}, ""))),
          h("tbody", {}, ...keys.map((k) =>
            h("tr", { "data-testid": "key-row", "data-key-id": k.id },
              h("td", { class: "id" }, k.id), h("td", {}, k.name), h("td", {}, (k.scopes as string[]).join(", ")),
              h("td", {}, k.revokedAt ? `revoked ${k.revokedAt}` : k.expiresAt ? `expires ${k.expiresAt}` : "active"),
              h("td", {}, k.lastUsedAt ?? "never"),
              h("td", {}, k.revokedAt ? null : h("button", {
                type: "button", class: "danger", "data-testid": "revoke-key",
                onclick: async () => {
                  if (!window.confirm(`Revoke API key ${k.name} (${k.id})? Anything using it stops working.`)) return;
                  try { await api("DELETE", `${base}/${k.id}`); await refresh(); } catch (e) { list.prepend(errorBox((e as Error).message)); }
                },
              }, "Revoke")),
            ),
          ))),
      );
    } catch (e) {
      list.replaceChildren(errorBox((e as Error).message));
    }
  };
  const form = h("form", {
    class: "card",
    onsubmit: async (e: Event) => {
      e.preventDefault();
      const chosen = scopes.map((l) => l.querySelector("input") as HTMLInputElement).filter((i) => i.checked).map((i) => i.value);
      try {
        const created = await api("POST", base, { name: name.value.trim(), scopes: chosen });
        shown.replaceChildren(h("div", { class: "secret", role: "status" },
          h("p", {}, "Copy this key now: it is shown only once."),
          h("pre", {}, h("code", { "data-testid": "new-key" }, created.token))));
        name.value = "";
        await refresh();
      } catch (err) {
        shown.replaceChildren(errorBox((err as Error).message));
      }
    },
  }, h("h3", {}, "New API key"), h("label", {}, "Name", name), h("div", { class: "scopes" }, ...scopes), h("button", { type: "submit", "data-testid": "create-key" }, "Create key"));
  clear(main).append(h("h2", {}, slug), appNav(slug, me, "/keys"), form, shown, list);
  await refresh();
}

export async function membersPage(main: HTMLElement, me: Me, slug: string): Promise<void> {
  const owner = can.own(roleOf(me, slug));
  const base = `/api/apps/${encodeURIComponent(slug)}/members`;
  const list = h("div", {}, loading("members"));
  const status = h("div", {});
  const refresh = async () => {
    try {
      const members: { login: string; role: string }[] = (await api("GET", base)).members;
      list.replaceChildren(h("ul", { class: "members" }, ...members.map((m) =>
        h("li", {}, h("span", {}, m.login), " ", h("span", { class: "badge" }, m.role),
          owner ? h("button", { type: "button", class: "danger", onclick: async () => {
            if (!window.confirm(`Remove ${m.login} from ${slug}?`)) return;
            try { await api("DELETE", `${base}/${encodeURIComponent(m.login)}`); await refresh(); } catch (e) { status.replaceChildren(errorBox((e as Error).message)); }
          } }, "Remove") : null),
      )));
    } catch (e) {
      list.replaceChildren(errorBox((e as Error).message));
    }
  };
  const login = h("input", { name: "login", required: true }) as HTMLInputElement;
  const role = h("select", { name: "role" }, h("option", { value: "viewer" }, "viewer"), h("option", { value: "publisher" }, "publisher"), h("option", { value: "owner" }, "owner")) as HTMLSelectElement;
  const form = owner
    ? h("form", { class: "card", onsubmit: async (e: Event) => {
        e.preventDefault();
        try { await api("PUT", `${base}/${encodeURIComponent(login.value.trim())}`, { role: role.value }); login.value = ""; status.replaceChildren(); await refresh(); }
        catch (err) { status.replaceChildren(errorBox((err as Error).message)); }
      } }, h("h3", {}, "Add or change a member"), h("label", {}, "Login", login), h("label", {}, "Role", role), h("button", { type: "submit" }, "Save"))
    : null;
  clear(main).append(h("h2", {}, slug), appNav(slug, me, "/members"), form ?? "", status, list);
  await refresh();
}

export async function auditPage(main: HTMLElement, me: Me, slug: string): Promise<void> {
  const actor = h("input", { name: "actor", placeholder: "actor, e.g. user:alice" }) as HTMLInputElement;
  const action = h("input", { name: "action", placeholder: "action, e.g. rollback" }) as HTMLInputElement;
  const list = h("div", {});
  const more = h("div", {});
  const rows = h("tbody", {});
  const load = async (before?: string) => {
    if (!before) rows.replaceChildren();
    more.replaceChildren(loading("audit entries"));
    try {
      const q = new URLSearchParams({ slug, limit: "50" });
      if (before) q.set("before", before);
      const page = await api("GET", `/api/audit?${q}`);
      const wanted = (page.entries as any[]).filter((e) =>
        (!actor.value.trim() || String(e.actor).includes(actor.value.trim())) && (!action.value.trim() || String(e.action).includes(action.value.trim())));
      for (const e of wanted) {
        rows.append(h("tr", {}, h("td", {}, e.at), h("td", {}, e.actorName ? `${e.actor} (${e.actorName})` : e.actor), h("td", {}, e.action),
          h("td", {}, [e.platform, e.runtimeVersion, e.channel].filter(Boolean).join(" · ")), h("td", { class: "id" }, (e.updateIds ?? []).join(", ")), h("td", {}, String(e.status)), h("td", {}, e.error ?? "")));
      }
      more.replaceChildren(page.nextCursor ? h("button", { type: "button", onclick: () => load(page.nextCursor) }, "Older entries") : h("p", { class: "muted" }, rows.childElementCount ? "End of the log." : "No entries match."));
    } catch (e) {
      more.replaceChildren(errorBox((e as Error).message));
    }
  };
  const filters = h("form", { class: "filters", onsubmit: (e: Event) => { e.preventDefault(); void load(); } }, actor, action, h("button", { type: "submit" }, "Filter"));
  list.append(h("table", {}, h("thead", {}, h("tr", {}, ...["time", "actor", "action", "where", "updates", "status", "error"].map((t) => h("th", {}, t)))), rows));
  clear(main).append(h("h2", {}, slug), appNav(slug, me, "/audit"), filters, list, more);
  await load();
}
