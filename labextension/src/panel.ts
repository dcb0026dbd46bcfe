/**
 * The "MLOps" side panel: a header and tabs (This notebook, Runs, Lineage, Pipelines,
 * Schedules, Models, Monitoring) over the active notebook. Tracks which notebook is active and whether its kernel is running cells.
 *
 * The tabs are icons (a tooltip and an accessible name each) and the header names the tab shown,
 * so they fit JupyterLab's default sidebar width; a wide panel shows their labels as well
 * (a CSS container query in style/base.css).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';
import { Signal } from '@lumino/signaling';
import { Panel, TabBar, TabPanel, Widget } from '@lumino/widgets';

import { IPanelContext } from './context';
import { h } from './dom';
import {
  cellsIcon,
  mlopsIcon,
  modelsIcon,
  monitoringIcon,
  pipelinesIcon,
  runsIcon,
  schedulesIcon
} from './icon';
import { LineageView } from './lineageView';
import { ModelsView } from './modelsView';
import { MonitoringView } from './monitoringView';
import { NotebookView } from './notebookView';
import { PipelinesView } from './pipelinesView';
import { RunsView } from './runsView';
import { SchedulesView } from './schedulesView';

export class MlopsPanel extends Panel implements IPanelContext {
  readonly notebookChanged = new Signal<this, string | null>(this);

  constructor(
    private app: JupyterFrontEnd,
    private tracker: INotebookTracker
  ) {
    super();
    this.id = 'nbmlops-panel';
    this.addClass('nbmlops-panel');
    this.title.caption = 'MLOps';
    const header = new Widget({
      node: h(
        'header',
        { class: 'nbmlops-header' },
        h('h2', {}, 'MLOps'),
        this.viewName
      )
    });
    this.notebookView = new NotebookView(this);
    this.runsView = new RunsView(this);
    this.lineageView = new LineageView(this);
    this.pipelinesView = new PipelinesView(this);
    this.schedulesView = new SchedulesView();
    this.modelsView = new ModelsView();
    this.monitoringView = new MonitoringView();
    this.tabs = new TabPanel({ renderer: new TabRenderer() });
    this.tabs.addClass('nbmlops-tabs');
    this.tabs.tabBar.addClass('jp-NbmlopsTabBar');
    this.tabs.tabBar.node.setAttribute('aria-label', 'MLOps views');
    const views: [Widget, LabIcon, string][] = [
      [this.notebookView, cellsIcon, 'cell executions of the active notebook, live'],
      [this.runsView, runsIcon, 'runs of the store: search, details, compare'],
      [this.lineageView, mlopsIcon, 'where a file or model came from, what came of it'],
      [this.pipelinesView, pipelinesIcon, 'pipeline definitions: run, step status'],
      [this.schedulesView, schedulesIcon, 'cron schedules and triggers'],
      [this.modelsView, modelsIcon, 'registered models: versions, aliases, gate, promote'],
      [this.monitoringView, monitoringIcon, 'served models: traffic, drift per feature, trigger fires']
    ];
    for (const [view, icon, what] of views) {
      view.title.icon = icon;
      view.title.caption = `${view.title.label}: ${what}`;
      this.tabs.addWidget(view);
    }
    this.tabs.currentChanged.connect(() => this.showViewName());
    this.showViewName();
    this.addWidget(header);
    this.addWidget(this.tabs);

    tracker.currentChanged.connect((_, panel) => this.watch(panel));
    this.watch(tracker.currentWidget);
    NotebookActions.executionScheduled.connect((_, args) => {
      if (args.notebook === this.tracker.currentWidget?.content) {
        this.activity = Date.now();
      }
    });
    NotebookActions.executed.connect((_, args) => {
      if (args.notebook === this.tracker.currentWidget?.content) {
        this.activity = Date.now();
      }
    });
  }

  currentPath(): string | null {
    return this.tracker.currentWidget?.context.path ?? null;
  }

  lastActivity(): number {
    return this.activity;
  }

  kernelBusy(): boolean {
    return this.tracker.currentWidget?.sessionContext.kernelDisplayStatus === 'busy';
  }

  jumpToCell(cellId: string): boolean {
    const panel = this.tracker.currentWidget;
    if (!panel) {
      return false;
    }
    const notebook = panel.content;
    const index = notebook.widgets.findIndex(cell => cell.model.id === cellId);
    if (index < 0) {
      return false;
    }
    notebook.deselectAll();
    notebook.activeCellIndex = index;
    notebook.mode = 'command';
    void notebook.scrollToItem(index, 'center');
    this.app.shell.activateById(panel.id);
    return true;
  }

  showLineage(target: string): void {
    this.tabs.currentWidget = this.lineageView;
    this.lineageView.showTarget(target);
  }

  private watch(panel: NotebookPanel | null): void {
    if (this.watched === panel) {
      return;
    }
    if (this.watched && !this.watched.isDisposed) {
      this.watched.sessionContext.statusChanged.disconnect(this.onStatus, this);
    }
    this.watched = panel;
    if (panel) {
      panel.sessionContext.statusChanged.connect(this.onStatus, this);
    }
    this.notebookChanged.emit(this.currentPath());
  }

  private showViewName(): void {
    this.viewName.textContent = this.tabs.currentWidget?.title.label ?? '';
  }

  private onStatus(): void {
    this.activity = Date.now();
  }

  private viewName = h('span', { class: 'nbmlops-header-view', 'aria-live': 'polite' });
  private activity = 0;
  private watched: NotebookPanel | null = null;
  private tabs: TabPanel;
  private notebookView: NotebookView;
  private runsView: RunsView;
  private lineageView: LineageView;
  private pipelinesView: PipelinesView;
  private schedulesView: SchedulesView;
  private modelsView: ModelsView;
  private monitoringView: MonitoringView;
}

/** Tabs named for assistive technology by their label, also when only the icon shows. */
class TabRenderer extends TabBar.Renderer {
  createTabARIA(data: TabBar.IRenderData<Widget>): ReturnType<TabBar.Renderer['createTabARIA']> {
    return { ...super.createTabARIA(data), 'aria-label': data.title.label };
  }
}
