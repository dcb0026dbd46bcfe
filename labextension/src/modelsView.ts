/**
 * "Models": the registered models of the project's store (`nbmlops models ...`, `%mlops
 * register`, the promotion gate). A list of models with their aliases; select one for its
 * versions (aliases, the gate's decision about each) and its audit history, newest first.
 * "Promote…" and "Roll back…" change an alias only after a confirmation dialog (JupyterLab's
 * `showDialog`) that also takes the reason kept in the audit log. Everything the store holds is
 * shown as text. Refreshed every 5 s while shown, not at all while hidden.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { NbmlopsApiError, StoreGate, postAPI, requestAPI, segment } from './api';
import { clear, formatTime, formatValue, h, message, shortClass, showBanner } from './dom';
import { viewPoll } from './polling';
import {
  GateInfo,
  ModelChange,
  ModelDetail,
  ModelEventInfo,
  ModelList,
  ModelSummary,
  ModelVersionInfo
} from './types';

const EVERY_MS = 5000;

export class ModelsView extends Widget {
  constructor() {
    super();
    this.addClass('nbmlops-models-view');
    this.title.label = 'Models';
    this.node.appendChild(
      h(
        'div',
        { class: 'nbmlops-toolbar' },
        h('span', { class: 'nbmlops-dim' }, 'Registered models of this project\u2019s store'),
        h(
          'button',
          { class: 'jp-mod-styled nbmlops-button', title: 'Refresh', onClick: () => this.load() },
          'Refresh'
        )
      )
    );
    this.node.appendChild(this.banner);
    this.node.appendChild(this.notice);
    this.list.setAttribute('aria-label', 'Registered models');
    this.list.setAttribute('role', 'list');
    this.node.appendChild(this.list);
    this.node.appendChild(this.detail);
    this.poll = viewPoll(this, 'models', EVERY_MS, () => this.fetch());
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
      const got = await requestAPI<ModelList>('models');
      this.showError(null);
      this.models = got.models;
      if (this.selected !== null && !this.models.some(m => m.name === this.selected)) {
        this.selected = null; // removed meanwhile
        this.model = null;
      }
      this.renderList();
      if (this.selected !== null) {
        await this.loadModel(this.selected);
      } else {
        clear(this.detail);
      }
    } catch (error) {
      this.showError(error);
    }
  }

  private async loadModel(name: string): Promise<void> {
    const generation = ++this.generation;
    try {
      const got = await requestAPI<ModelDetail>(`models/${segment(name)}`);
      if (generation !== this.generation || this.selected !== name) {
        return; // another model was selected meanwhile
      }
      this.model = got;
      this.renderDetail();
    } catch (error) {
      if (generation === this.generation) {
        this.showError(error);
      }
    }
  }

  private showError(error: unknown): void {
    showBanner(
      this.banner,
      !error ? null : typeof error === 'string' ? error : this.gate.note(error)
    );
  }

  private select(name: string): void {
    this.selected = name;
    this.model = null;
    clear(this.notice);
    this.renderList();
    clear(this.detail);
    this.detail.appendChild(message('Loading…'));
    void this.loadModel(name);
  }

  // -- the list --------------------------------------------------------------------------------

  private renderList(): void {
    clear(this.list);
    if (!this.models.length) {
      this.list.appendChild(
        message(
          'No registered models yet. Register one in a notebook with `%mlops register VAR ' +
            '--name NAME` (or `nbmlops.register(model, name=...)`), or in a terminal with ' +
            '`nbmlops models register PATH --name NAME`.'
        )
      );
      return;
    }
    for (const m of this.models) {
      const aliases = Object.entries(m.aliases);
      const row = h(
        'div',
        {
          class: `nbmlops-modelrow${m.name === this.selected ? ' jp-mod-selected' : ''}`,
          role: 'listitem',
          tabindex: 0,
          'data-model': m.name,
          'aria-current': m.name === this.selected ? 'true' : null,
          onClick: () => this.select(m.name),
          onKeydown: (e: KeyboardEvent) => {
            if (e.key === 'Enter') {
              this.select(m.name);
            }
          }
        },
        h('span', { class: 'nbmlops-modelname' }, m.name),
        h(
          'span',
          { class: 'nbmlops-dim' },
          m.latest_version !== null
            ? `v${m.latest_version} · ${m.version_count} version${m.version_count === 1 ? '' : 's'}`
            : 'no versions'
        ),
        h(
          'div',
          { class: 'nbmlops-chips' },
          ...aliases.map(([alias, v]) => aliasChip(alias, v))
        )
      );
      this.list.appendChild(row);
    }
  }

  // -- one model -------------------------------------------------------------------------------

  private renderDetail(): void {
    clear(this.detail);
    const m = this.model;
    if (!m) {
      return;
    }
    const aliases = Object.entries(m.aliases);
    const aliasList = h('div', { class: 'nbmlops-aliases', 'aria-label': 'Aliases' });
    if (!aliases.length) {
      aliasList.appendChild(h('span', { class: 'nbmlops-dim' }, 'No aliases yet.'));
    }
    for (const [alias, v] of aliases) {
      aliasList.appendChild(
        h(
          'div',
          { class: 'nbmlops-aliasrow', 'data-alias': alias, 'data-version': v },
          aliasChip(alias, v),
          h(
            'button',
            {
              class: 'jp-mod-styled nbmlops-button nbmlops-rollback',
              title: `Move ${alias} back to the version it pointed at before`,
              disabled: this.busy,
              onClick: () => void this.rollback(m, alias)
            },
            'Roll back…'
          )
        )
      );
    }
    const versions = h('div', { class: 'nbmlops-versions', role: 'list', 'aria-label': 'Versions' });
    for (const v of m.versions) {
      versions.appendChild(this.versionRow(m, v));
    }
    if (m.version_count > m.versions.length) {
      versions.appendChild(
        h(
          'div',
          { class: 'nbmlops-dim' },
          `…${m.version_count - m.versions.length} older versions (nbmlops models versions ${m.name})`
        )
      );
    }
    const history = h('ol', { class: 'nbmlops-history', reversed: true, 'aria-label': 'History' });
    for (const e of [...m.events].reverse()) {
      history.appendChild(eventRow(e));
    }
    this.detail.appendChild(
      h(
        'section',
        { class: 'nbmlops-model-detail', 'data-model': m.name },
        h('h3', {}, m.name),
        m.description ? h('div', { class: 'nbmlops-dim' }, m.description) : null,
        aliasList,
        h('h4', {}, 'Versions'),
        versions,
        h('h4', {}, 'History (newest first)'),
        m.events.length ? history : message('No events.'),
        m.events_truncated
          ? h('div', { class: 'nbmlops-dim' }, `Older events: nbmlops models history ${m.name}`)
          : null
      )
    );
  }

  private versionRow(m: ModelDetail, v: ModelVersionInfo): HTMLElement {
    const chips = h('div', { class: 'nbmlops-chips' });
    for (const alias of v.aliases) {
      chips.appendChild(aliasChip(alias, null));
    }
    if (v.gate) {
      chips.appendChild(gateChip(v.gate));
    }
    const what = [
      v.model_class ? shortClass(v.model_class) : null,
      v.format,
      formatTime(v.created_at),
      v.created_by ? `by ${v.created_by}` : null
    ]
      .filter(Boolean)
      .join(' · ');
    return h(
      'div',
      {
        class: 'nbmlops-versionrow',
        role: 'listitem',
        'data-version': v.version,
        'data-aliases': v.aliases.join(' ')
      },
      h('span', { class: 'nbmlops-versionno', title: v.uri }, `v${v.version}`),
      h(
        'span',
        {
          class: 'nbmlops-versionwhat',
          title: `${v.model_class ?? 'unknown class'}\nsha256 ${v.digest}` +
            (v.run_id ? `\nrun ${v.run_id}` : '')
        },
        what
      ),
      h(
        'button',
        {
          class: 'jp-mod-styled nbmlops-button nbmlops-promote',
          title: `Point an alias (champion by default) at ${m.name} v${v.version}`,
          disabled: this.busy,
          onClick: () => void this.promote(m, v)
        },
        'Promote…'
      ),
      chips
    );
  }

  // -- changes, each behind a confirmation dialog -----------------------------------------------

  private async promote(m: ModelDetail, v: ModelVersionInfo): Promise<void> {
    const body = new ChangeBody(m, 'champion', `v${v.version}`, true);
    const result = await showDialog({
      title: `Promote ${m.name} v${v.version}?`,
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Promote' })],
      focusNodeSelector: 'input'
    });
    if (!result.button.accept || !result.value) {
      return;
    }
    const { alias, reason } = result.value;
    await this.change(`models/${segment(m.name)}/promote`, {
      version: v.version,
      alias: alias || 'champion',
      reason: reason || undefined
    });
  }

  private async rollback(m: ModelDetail, alias: string): Promise<void> {
    const body = new ChangeBody(m, alias, 'the version it pointed at before', false);
    const result = await showDialog({
      title: `Roll back ${m.name}@${alias}?`,
      body,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Roll back' })],
      focusNodeSelector: 'textarea'
    });
    if (!result.button.accept || !result.value) {
      return;
    }
    await this.change(`models/${segment(m.name)}/rollback`, {
      alias,
      reason: result.value.reason || undefined
    });
  }

  private async change(endpoint: string, body: { [key: string]: unknown }): Promise<void> {
    this.busy = true;
    this.renderDetail();
    try {
      const got = await postAPI<ModelChange>(endpoint, body);
      this.showError(null);
      clear(this.notice);
      this.notice.appendChild(
        h(
          'div',
          { class: 'nbmlops-message nbmlops-message-ok', role: 'status' },
          got.changed
            ? `${got.name}@${got.alias} now points at v${got.version}.`
            : `${got.name}@${got.alias} already pointed at v${got.version}: nothing changed.`
        )
      );
    } catch (error) {
      this.showError(error instanceof NbmlopsApiError ? error.message : error);
    } finally {
      this.busy = false;
      this.load();
    }
  }

  private poll: Poll;
  private gate = new StoreGate();
  private models: ModelSummary[] = [];
  private selected: string | null = null;
  private model: ModelDetail | null = null;
  private generation = 0;
  private busy = false;
  private banner = h('div', { class: 'nbmlops-banner' });
  private notice = h('div', { class: 'nbmlops-notice' });
  private list = h('div', { class: 'nbmlops-models' });
  private detail = h('div', { class: 'nbmlops-model-box' });
}

/** The dialog's body: what will change, the alias (promote only) and the reason. */
class ChangeBody
  extends Widget
  implements Dialog.IBodyWidget<{ alias: string; reason: string }>
{
  constructor(m: ModelDetail, alias: string, target: string, editableAlias: boolean) {
    super();
    this.addClass('nbmlops-dialog');
    const now = m.aliases[alias];
    this.alias = h('input', {
      class: 'jp-mod-styled nbmlops-dialog-alias',
      type: 'text',
      value: alias,
      'aria-label': 'Alias',
      readonly: !editableAlias
    });
    this.reason = h('textarea', {
      class: 'jp-mod-styled nbmlops-dialog-reason',
      rows: 3,
      placeholder: 'Why (kept in the audit log)',
      'aria-label': 'Reason'
    });
    const summary = h(
      'p',
      { class: 'nbmlops-dialog-summary' },
      'Moves ',
      h('code', {}, `${m.name}@${alias}`),
      ` to ${target}`,
      now !== undefined ? ` (now v${now}).` : ' (a new alias).',
      ' Everything that loads ',
      h('code', {}, `models:/${m.name}@${alias}`),
      ' gets that version; the change is recorded with your reason.'
    );
    this.node.appendChild(summary);
    this.node.appendChild(h('label', {}, 'Alias', this.alias));
    this.node.appendChild(h('label', {}, 'Reason', this.reason));
  }

  getValue(): { alias: string; reason: string } {
    return { alias: this.alias.value.trim(), reason: this.reason.value.trim() };
  }

  private alias: HTMLInputElement;
  private reason: HTMLTextAreaElement;
}

function aliasChip(alias: string, version: number | null): HTMLElement {
  return h(
    'span',
    {
      class: 'nbmlops-chip nbmlops-chip-alias',
      'data-alias': alias,
      title: version !== null ? `models:/…@${alias} loads v${version}` : `alias ${alias}`
    },
    version !== null ? `${alias} → v${version}` : alias
  );
}

function score(value: number | null): string {
  return value === null ? '–' : formatValue(value);
}

function gateText(g: GateInfo): string {
  const champ =
    g.champion_version !== null
      ? `, ${g.alias ?? 'champion'} v${g.champion_version} ${score(g.champion_score)}`
      : '';
  return `${g.metric ?? 'score'} ${score(g.candidate_score)}${champ}`;
}

function gateChip(g: GateInfo): HTMLElement {
  const promoted = g.decision === 'promoted';
  return h(
    'span',
    {
      class: `nbmlops-chip nbmlops-chip-gate nbmlops-chip-${promoted ? 'valid' : 'invalid'}`,
      'data-decision': g.decision ?? '',
      title: `Gate ${g.decision ?? ''}: ${gateText(g)}\n${g.reasons.join('\n')}`
    },
    `gate ${promoted ? '✓' : '✗'} ${g.decision ?? ''}`
  );
}

function eventRow(e: ModelEventInfo): HTMLElement {
  let what: string;
  if (e.gate) {
    what = `gate ${e.gate.decision ?? ''} v${e.to_version ?? '?'}: ${gateText(e.gate)}`;
  } else if (e.from_version !== null || (e.alias && e.to_version !== null)) {
    const from = e.from_version !== null ? `v${e.from_version}` : '(none)';
    const to = e.to_version !== null ? `v${e.to_version}` : '(none)';
    what = `${e.kind} ${e.alias ?? ''} ${from} → ${to}`;
  } else {
    what = `${e.kind}${e.to_version !== null ? ` v${e.to_version}` : ''}`;
  }
  const who = [e.user, e.host ? `@${e.host}` : null].filter(Boolean).join('');
  return h(
    'li',
    { class: `nbmlops-event nbmlops-event-${e.kind}`, 'data-kind': e.kind, 'data-event': e.id },
    h('span', { class: 'nbmlops-eventwhat' }, what),
    h('span', { class: 'nbmlops-dim' }, ` ${formatTime(e.created_at)}${who ? ` · ${who}` : ''}`),
    e.reason ? h('div', { class: 'nbmlops-eventreason' }, e.reason) : null
  );
}
