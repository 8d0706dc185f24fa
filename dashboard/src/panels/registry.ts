// The app page is a list of panels. A feature adds its view by registering one panel in its own
// module (and importing that module in panels/index.ts): the page gives each panel the app, the
// caller's role and an element to fill, and a way to refresh every panel after a change.

import type { Me, Role } from "../api";

export interface UpdateSummary {
  id: string;
  createdAt: string;
  channel: string;
  kind: string;
  current: boolean;
  signed: boolean;
  message?: string;
  gitCommit?: string;
  republishedFrom?: string;
  fileCount: number;
  totalBytes: number;
}

export interface RuntimeUpdates {
  platform: string;
  runtimeVersion: string;
  updates: UpdateSummary[];
}

export interface PanelContext {
  slug: string;
  me: Me;
  role: Role | undefined;
  /** GET /api/updates?slug=…, loaded once per page render. */
  updates: RuntimeUpdates[];
  /** Re-render every panel (after an action changed something). */
  refresh: () => void;
}

export interface Panel {
  id: string;
  title: string;
  /** Lower first. */
  order: number;
  render(ctx: PanelContext, el: HTMLElement): void | Promise<void>;
}

const panels: Panel[] = [];

export function registerPanel(p: Panel): void {
  panels.push(p);
  panels.sort((a, b) => a.order - b.order);
}

export function allPanels(): readonly Panel[] {
  return panels;
}
