/**
 * "Schedules": the cron schedules and triggers of the project's store, whether a scheduler
 * (`nbmlops scheduler`, a process of its own) fires them, and per schedule "Fire now",
 * "Pause"/"Resume"; click a row for its fire history. The panel never fires anything on time
 * itself: schedules outlive JupyterLab. Refreshed every 5 s while shown (every second while a
 * fire runs), not at all while hidden.
 */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { NbmlopsApiError, StoreGate, postAPI, requestAPI, segment } from './api';
import { basename, clear, formatDuration, formatTime, h, message, showBanner } from './dom';
import { viewPoll } from './polling';
import { FireAnswer, Schedule, ScheduleFire, ScheduleHistory, ScheduleList, SchedulerInfo } from './types';

const SLOW_MS = 5000;
const FAST_MS = 1000;
const HISTORY = 50;
/** Fire statuses that will still change. */
const OPEN = ['started', 'queued'];

export class SchedulesView extends Widget {
  constructor() {
    super();
    this.addClass('nbmlops-schedules-view');
    this.title.label = 'Schedules';
    const refresh = h(
      'button',
      { class: 'jp-mod-styled nbmlops-button', title: 'Refresh', onClick: () => this.load() },
      'Refresh'
    );
    this.node.appendChild(
      h(
        'div',
        { class: 'nbmlops-toolbar' },
        h('span', { class: 'nbmlops-dim' }, 'Cron schedules and triggers of this project\u2019s store'),
        refresh
      )
    );
    this.node.appendChild(this.banner);
    this.node.appendChild(this.schedulerBox);
    this.node.appendChild(this.table);
    this.node.appendChild(this.history);
    this.poll = viewPoll(this, 'schedules', SLOW_MS, () => this.fetch());
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  protected onAfterShow(): void {
    this.load();
    void this.poll.start();
  }

  load(): void {
    void this.poll.refresh();
  }

  // -- data ------------------------------------------------------------------------------------

  private async fetch(): Promise<void> {
    try {
      const problem = await this.gate.check(null);
      if (problem !== null) {
        this.showError(problem);
        return;
      }
      const got = await requestAPI<ScheduleList>('schedules');
      this.showError(null);
      this.schedules = got.schedules;
      this.renderScheduler(got.scheduler);
      this.renderTable();
      if (this.selected !== null) {
        if (this.schedules.some(s => s.name === this.selected)) {
          await this.loadHistory(this.selected);
        } else {
          this.selected = null; // removed meanwhile
          clear(this.history);
        }
      }
    } catch (error) {
      this.showError(error);
    }
    this.pace();
  }

  /** Poll every second while a fire may still change, every 5 s otherwise. */
  private pace(): void {
    const busy =
      this.firing.size > 0 ||
      this.schedules.some(s => s.last_fire !== null && OPEN.includes(s.last_fire.status));
    const interval = busy ? FAST_MS : SLOW_MS;
    if (this.poll.frequency.interval !== interval) {
      this.poll.frequency = { ...this.poll.frequency, interval };
    }
  }

  private showError(error: unknown): void {
    showBanner(this.banner, !error ? null : typeof error === 'string' ? error : this.gate.note(error));
  }

  // -- the scheduler banner --------------------------------------------------------------------

  private renderScheduler(info: SchedulerInfo): void {
    clear(this.schedulerBox);
    this.schedulerBox.setAttribute('data-running', String(info.running));
    if (info.running) {
      const who = [info.pid !== null ? `pid ${info.pid}` : null, info.host ? `on ${info.host}` : null]
        .filter(Boolean)
        .join(' ');
      this.schedulerBox.appendChild(
        h(
          'div',
          { class: 'nbmlops-message nbmlops-message-ok', role: 'status', title: info.holder ?? '' },
          `A scheduler is running on this store${who ? ` (${who})` : ''}: schedules and triggers fire on time.`
        )
      );
    } else {
      this.schedulerBox.appendChild(
        h(
          'div',
          { class: 'nbmlops-message nbmlops-message-warn', role: 'status' },
          'No scheduler is running: start `nbmlops scheduler` in a terminal',
          h(
            'div',
            { class: 'nbmlops-dim' },
            'Until one runs, nothing fires on its own; Fire now still works.' +
              (info.holder ? ` The last one (${info.host ?? '?'}, pid ${info.pid ?? '?'}) stopped renewing its lease.` : '')
          )
        )
      );
    }
  }

  // -- the table -------------------------------------------------------------------------------

  private renderTable(): void {
    clear(this.table);
    if (!this.schedules.length) {
      this.table.appendChild(
        h(
          'caption',
          {},
          message(
            'No schedules or triggers yet. Add one in a terminal: `nbmlops schedule add NOTEBOOK_OR_PIPELINE --cron "0 3 * * *"` or `nbmlops trigger add ... --on-change PATH` / `--after PIPELINE`.'
          )
        )
      );
      return;
    }
    const head = h(
      'tr',
      {},
      h('th', { scope: 'col' }, 'Name'),
      h('th', { scope: 'col' }, 'When / next fire'),
      h('th', { scope: 'col' }, 'State'),
      h('th', { scope: 'col' }, 'Last fire'),
      h('th', { scope: 'col' }, '')
    );
    const body = h('tbody', {});
    for (const s of this.schedules) {
      body.appendChild(this.row(s));
    }
    this.table.appendChild(h('thead', {}, head));
    this.table.appendChild(body);
  }

  private row(s: Schedule): HTMLElement {
    const state = s.paused ? 'paused' : 'active';
    const last = s.last_fire;
    const params = Object.entries(s.params);
    const firing = this.firing.has(s.name);
    const fireButton = h(
      'button',
      {
        class: 'jp-mod-styled jp-mod-accept nbmlops-button nbmlops-fire',
        title: `Run ${s.target_path ?? s.target} now with its parameters (recorded as a manual fire)`,
        disabled: firing,
        onClick: (e: Event) => {
          e.stopPropagation();
          void this.fire(s);
        }
      },
      firing ? 'Firing…' : 'Fire now'
    );
    const pauseButton = h(
      'button',
      {
        class: 'jp-mod-styled nbmlops-button nbmlops-pause',
        title: s.paused
          ? 'Fire again (what was due while paused does not fire)'
          : 'Stop firing until resumed (a running run goes on)',
        disabled: this.toggling.has(s.name),
        onClick: (e: Event) => {
          e.stopPropagation();
          void this.togglePause(s);
        }
      },
      s.paused ? 'Resume' : 'Pause'
    );
    return h(
      'tr',
      {
        class: `nbmlops-schedulerow${this.selected === s.name ? ' jp-mod-selected' : ''}`,
        'data-name': s.name,
        'data-kind': s.kind,
        'data-state': state,
        tabindex: 0,
        title: 'Show its fires',
        onClick: () => void this.select(s.name),
        onKeydown: (e: KeyboardEvent) => {
          if (e.key === 'Enter' && e.target === e.currentTarget) {
            void this.select(s.name);
          }
        }
      },
      h(
        'td',
        { title: s.target_path ?? s.target },
        h('div', { class: 'nbmlops-runname' }, s.name),
        h('div', { class: 'nbmlops-dim nbmlops-target' }, basename(s.target_path ?? s.target)),
        params.length
          ? h(
              'div',
              { class: 'nbmlops-chips' },
              ...params.map(([k, v]) => h('span', { class: 'nbmlops-chip nbmlops-chip-param' }, `${k}=${v}`))
            )
          : null
      ),
      h(
        'td',
        {},
        h('div', { class: 'nbmlops-when', title: when(s, true) }, when(s, false)),
        h(
          'div',
          { class: 'nbmlops-dim', title: s.next_fire ? `next fire ${s.next_fire} (UTC)` : '' },
          s.kind === 'cron' ? 'next ' : '',
          h('span', { class: 'nbmlops-nextfire' }, s.paused ? '–' : s.next_fire_local ?? '–')
        )
      ),
      h('td', {}, h('span', { class: `nbmlops-badge nbmlops-sched-${state}`, 'data-state': state }, state)),
      h(
        'td',
        { class: 'nbmlops-lastfire', title: last ? fireTitle(last) : '' },
        last
          ? h('span', { class: `nbmlops-badge nbmlops-run-${last.status}`, 'data-status': last.status }, last.status)
          : '–',
        last?.run_id ? h('span', { class: 'nbmlops-dim nbmlops-runid', title: last.run_id }, ` ${last.run_id.slice(0, 8)}`) : null
      ),
      h('td', { class: 'nbmlops-actions' }, fireButton, pauseButton)
    );
  }

  // -- actions ---------------------------------------------------------------------------------

  private async fire(s: Schedule): Promise<void> {
    this.firing.add(s.name);
    this.renderTable();
    try {
      const got = await postAPI<FireAnswer>(`schedules/${segment(s.name)}/fire`);
      this.showError(null);
      // shown at once; the poll follows it every second until it ends
      s.last_fire = {
        id: got.fire,
        schedule: s.name,
        status: got.status,
        due_at: null,
        due: null,
        created_at: Date.now() / 1000,
        started_at: Date.now() / 1000,
        ended_at: null,
        run_id: got.run_id,
        pid: null,
        owner: null,
        reason: { kind: 'manual' },
        message: null
      };
    } catch (error) {
      this.showError(error instanceof NbmlopsApiError ? error.message : error);
    } finally {
      this.firing.delete(s.name);
      this.renderTable();
      this.pace();
      this.load();
    }
  }

  private async togglePause(s: Schedule): Promise<void> {
    this.toggling.add(s.name);
    this.renderTable();
    try {
      const got = await postAPI<Schedule>(`schedules/${segment(s.name)}/${s.paused ? 'resume' : 'pause'}`);
      this.showError(null);
      this.schedules = this.schedules.map(x => (x.name === got.name ? got : x));
    } catch (error) {
      this.showError(error instanceof NbmlopsApiError ? error.message : error);
    } finally {
      this.toggling.delete(s.name);
      this.renderTable();
    }
  }

  // -- history ---------------------------------------------------------------------------------

  private async select(name: string): Promise<void> {
    this.selected = name;
    for (const row of Array.from(this.table.querySelectorAll('.nbmlops-schedulerow'))) {
      row.classList.toggle('jp-mod-selected', row.getAttribute('data-name') === name);
    }
    clear(this.history);
    this.history.appendChild(message(`Loading the fires of ${name}…`));
    await this.loadHistory(name);
  }

  private async loadHistory(name: string): Promise<void> {
    const generation = ++this.generation;
    try {
      const got = await requestAPI<ScheduleHistory>(`schedules/${segment(name)}/history`, { limit: HISTORY });
      if (generation !== this.generation || this.selected !== name) {
        return; // another schedule was selected meanwhile
      }
      this.renderHistory(got);
    } catch (error) {
      if (generation !== this.generation) {
        return;
      }
      clear(this.history);
      this.history.appendChild(message(this.gate.note(error), 'error'));
    }
  }

  private renderHistory(got: ScheduleHistory): void {
    clear(this.history);
    const s = this.schedules.find(x => x.name === got.schedule);
    this.history.appendChild(
      h(
        'h3',
        {},
        `Fires of ${got.schedule}`,
        s ? h('span', { class: 'nbmlops-dim' }, ` ${s.target_path ?? s.target}`) : null
      )
    );
    if (!got.fires.length) {
      this.history.appendChild(message(`${got.schedule} has not fired yet.`));
      return;
    }
    const head = h(
      'tr',
      {},
      h('th', { scope: 'col' }, 'Due'),
      h('th', { scope: 'col' }, 'Trigger'),
      h('th', { scope: 'col' }, 'Status'),
      h('th', { scope: 'col' }, 'Run'),
      h('th', { scope: 'col' }, 'Started'),
      h('th', { scope: 'col' }, 'Took'),
      h('th', { scope: 'col' }, 'Note')
    );
    const body = h('tbody', {});
    for (const f of got.fires) {
      const took =
        f.ended_at !== null && f.started_at !== null
          ? f.ended_at - f.started_at
          : f.started_at !== null && OPEN.includes(f.status)
            ? Date.now() / 1000 - f.started_at
            : null;
      const due = typeof f.reason.due_local === 'string' ? f.reason.due_local : f.due;
      body.appendChild(
        h(
          'tr',
          { class: 'nbmlops-firerow', 'data-fire': f.id, 'data-status': f.status, 'data-trigger': f.reason.kind ?? '' },
          h('td', { title: f.due ?? '' }, due ?? '–'),
          h('td', { title: trigger(f, true) }, trigger(f, false)),
          h('td', {}, h('span', { class: `nbmlops-badge nbmlops-run-${f.status}` }, f.status)),
          h('td', { title: f.run_id ?? '' }, f.run_id ? f.run_id.slice(0, 8) : '–'),
          h('td', {}, formatTime(f.started_at ?? f.created_at)),
          h('td', {}, formatDuration(took)),
          h('td', { title: f.message ?? '' }, f.message ?? '')
        )
      );
    }
    this.history.appendChild(
      h('table', { class: 'nbmlops-table', 'aria-label': 'Fires' }, h('thead', {}, head), body)
    );
  }

  private gate = new StoreGate();
  private poll: Poll;
  private schedules: Schedule[] = [];
  private selected: string | null = null;
  private generation = 0;
  private firing = new Set<string>();
  private toggling = new Set<string>();
  private banner = h('div', { class: 'nbmlops-banner' });
  private schedulerBox = h('div', { class: 'nbmlops-scheduler' });
  private table = h('table', { class: 'nbmlops-table nbmlops-schedules', 'aria-label': 'Schedules' });
  private history = h('div', { class: 'nbmlops-schedule-history' });
}

/** When a schedule fires: its cron and zone, or what its trigger waits for. */
function when(s: Schedule, full: boolean): string {
  if (s.kind === 'cron') {
    return `${s.cron ?? ''} ${s.timezone ?? 'UTC'}`.trim();
  }
  const watched = full ? s.watch ?? '' : s.watch_path ?? s.watch ?? '';
  if (s.kind === 'change') {
    const files = s.watched_files !== null ? ` (${s.watched_files} file${s.watched_files === 1 ? '' : 's'})` : '';
    return `on change ${watched}${full ? files : ''}`;
  }
  if (s.kind === 'after') {
    return `after ${full ? watched : s.watch_path ?? basename(watched)}`;
  }
  return s.kind;
}

/** What fired a fire, as a short text (full: for a tooltip). */
function trigger(f: ScheduleFire, full: boolean): string {
  const r = f.reason;
  switch (r.kind) {
    case 'manual':
      return `manual (${typeof r.by === 'string' ? r.by : '?'})`;
    case 'change': {
      const files = r.files && typeof r.files === 'object' ? Object.keys(r.files as object) : [];
      return `change ${files.map(p => (full ? p : basename(p))).join(', ')}`.trim();
    }
    case 'after':
      return `after run ${String(r.upstream_run ?? '').slice(0, full ? 64 : 8)}`;
    case 'schedule':
      return typeof r.missed === 'number' ? `schedule (${r.missed} missed)` : 'schedule';
    default:
      return r.kind ?? '';
  }
}

function fireTitle(f: ScheduleFire): string {
  return [
    `fire ${f.id}: ${trigger(f, true)}`,
    f.started_at !== null ? `started ${formatTime(f.started_at)}` : null,
    f.run_id ? `run ${f.run_id}` : null,
    f.message
  ]
    .filter(Boolean)
    .join('\n');
}
