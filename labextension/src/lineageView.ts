/**
 * "Lineage": the graph of an artifact's history (datasets -> cells -> models), laid out in
 * layers from top (origins) to bottom (fits a tall, narrow side panel), zoomable with the mouse wheel (SVG viewBox) and pannable
 * by dragging; clicking a node shows its details as text.
 */
import { Widget } from '@lumino/widgets';

import { NbmlopsApiError, requestAPI } from './api';
import { IPanelContext } from './context';
import { clear, formatValue, h, message, s } from './dom';
import { LineageGraph, LineageNode } from './types';

const NODE_W = 200;
const NODE_H = 34;
const GAP_X = 16;
const GAP_Y = 42;

interface Placed {
  node: LineageNode;
  x: number;
  y: number;
}

export class LineageView extends Widget {
  constructor(private ctx: IPanelContext) {
    super();
    this.addClass('nbmlops-lineage-view');
    this.title.label = 'Lineage';
    this.target = h('input', {
      type: 'text',
      class: 'jp-mod-styled nbmlops-input',
      placeholder: 'File path, artifact:ID or cell:ID',
      'aria-label': 'Lineage target',
      onKeydown: (e: KeyboardEvent) => {
        if (e.key === 'Enter') {
          void this.load();
        }
      }
    });
    this.direction = h(
      'select',
      { class: 'jp-mod-styled', 'aria-label': 'Direction', onChange: () => void this.load() },
      h('option', { value: 'upstream' }, 'upstream'),
      h('option', { value: 'downstream' }, 'downstream'),
      h('option', { value: 'both' }, 'both')
    );
    this.node.appendChild(
      h(
        'div',
        { class: 'nbmlops-toolbar' },
        this.target,
        this.direction,
        h('button', { class: 'jp-mod-styled jp-mod-accept nbmlops-button', onClick: () => void this.load() }, 'Show'),
        h('button', { class: 'jp-mod-styled nbmlops-button', onClick: () => this.fitGraph() }, 'Fit')
      )
    );
    this.node.appendChild(this.banner);
    this.node.appendChild(this.canvas);
    this.node.appendChild(this.details);
    this.banner.appendChild(
      message('Give a file a notebook read or wrote (e.g. data/train.csv), or click a dataset chip in “This notebook”.')
    );
  }

  showTarget(target: string): void {
    this.target.value = target;
    void this.load();
  }

  private async load(): Promise<void> {
    const target = this.target.value.trim();
    if (!target) {
      return;
    }
    clear(this.banner);
    try {
      const graph = await requestAPI<LineageGraph>('lineage', {
        path: this.ctx.currentPath(),
        target,
        direction: this.direction.value
      });
      this.draw(graph);
    } catch (error) {
      const text = error instanceof NbmlopsApiError ? error.message : String(error);
      this.banner.appendChild(message(text, 'error'));
    }
  }

  private draw(graph: LineageGraph): void {
    clear(this.canvas);
    clear(this.details);
    const placed = layout(graph);
    const byId = new Map(placed.map(p => [p.node.id, p]));
    let maxX = 0;
    let maxY = 0;
    for (const p of placed) {
      maxX = Math.max(maxX, p.x + NODE_W);
      maxY = Math.max(maxY, p.y + NODE_H);
    }
    this.extent = { w: maxX + 20, h: maxY + 20 };
    const svg = s('svg', {
      class: 'nbmlops-graph',
      role: 'img',
      'aria-label': `Lineage of ${graph.root}`,
      preserveAspectRatio: 'xMidYMid meet'
    });
    const defs = s('defs', {});
    const marker = s('marker', {
      id: 'nbmlops-arrow',
      viewBox: '0 0 10 10',
      refX: 10,
      refY: 5,
      markerWidth: 7,
      markerHeight: 7,
      orient: 'auto-start-reverse'
    });
    marker.appendChild(s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'nbmlops-arrowhead' }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    for (const e of graph.edges) {
      const a = byId.get(e.source);
      const b = byId.get(e.target);
      if (!a || !b) {
        continue;
      }
      const x1 = a.x + NODE_W / 2;
      const y1 = a.y + NODE_H;
      const x2 = b.x + NODE_W / 2;
      const y2 = b.y;
      const my = (y1 + y2) / 2;
      const path = s('path', {
        d: `M ${x1} ${y1} C ${x1} ${my}, ${x2} ${my}, ${x2} ${y2}`,
        class: 'nbmlops-edge',
        'marker-end': 'url(#nbmlops-arrow)'
      });
      path.appendChild(s('title', {}, e.label));
      svg.appendChild(path);
      if (e.label && e.label !== 'read' && e.label !== 'wrote') {
        svg.appendChild(
          s('text', { x: (x1 + x2) / 2 + 4, y: my + 3, class: 'nbmlops-edge-label' }, e.label)
        );
      }
    }
    for (const p of placed) {
      const g = s('g', {
        class: `nbmlops-node nbmlops-node-${p.node.type}${p.node.id === graph.root ? ' nbmlops-root' : ''}`,
        transform: `translate(${p.x},${p.y})`,
        tabindex: 0,
        role: 'button',
        'data-node-id': p.node.id,
        onClick: () => this.select(p.node, g),
        onKeydown: (ev: KeyboardEvent) => {
          if (ev.key === 'Enter') {
            this.select(p.node, g);
          }
        }
      });
      g.appendChild(s('rect', { width: NODE_W, height: NODE_H, rx: 6 }));
      const label = p.node.label.length > 30 ? p.node.label.slice(0, 29) + '…' : p.node.label;
      g.appendChild(s('text', { x: 8, y: 14, class: 'nbmlops-node-type' }, p.node.type));
      g.appendChild(s('text', { x: 8, y: 28, class: 'nbmlops-node-label' }, label));
      g.appendChild(s('title', {}, p.node.label));
      svg.appendChild(g);
    }
    svg.addEventListener('wheel', e => this.zoom(e), { passive: false });
    svg.addEventListener('pointerdown', e => this.panStart(e));
    svg.addEventListener('pointermove', e => this.panMove(e));
    svg.addEventListener('pointerup', () => (this.drag = null));
    svg.addEventListener('pointerleave', () => (this.drag = null));
    this.svg = svg;
    this.canvas.appendChild(svg);
    this.fitGraph();
    const root = placed.find(p => p.node.id === graph.root);
    if (root) {
      this.describe(root.node);
    }
  }

  private fitGraph(): void {
    if (!this.svg) {
      return;
    }
    this.view = { x: -10, y: -10, w: this.extent.w, h: this.extent.h };
    this.applyView();
  }

  private applyView(): void {
    if (this.svg) {
      const v = this.view;
      this.svg.setAttribute('viewBox', `${v.x} ${v.y} ${v.w} ${v.h}`);
    }
  }

  private zoom(e: WheelEvent): void {
    if (!this.svg) {
      return;
    }
    e.preventDefault();
    const rect = this.svg.getBoundingClientRect();
    const fx = rect.width ? (e.clientX - rect.left) / rect.width : 0.5;
    const fy = rect.height ? (e.clientY - rect.top) / rect.height : 0.5;
    const factor = e.deltaY > 0 ? 1.15 : 1 / 1.15;
    const v = this.view;
    const w = Math.min(Math.max(v.w * factor, 50), this.extent.w * 20);
    const hgt = (v.h * w) / v.w;
    this.view = { x: v.x + (v.w - w) * fx, y: v.y + (v.h - hgt) * fy, w, h: hgt };
    this.applyView();
  }

  private panStart(e: PointerEvent): void {
    if ((e.target as Element).closest('.nbmlops-node')) {
      return;
    }
    this.drag = { x: e.clientX, y: e.clientY, view: { ...this.view } };
  }

  private panMove(e: PointerEvent): void {
    if (!this.drag || !this.svg) {
      return;
    }
    const rect = this.svg.getBoundingClientRect();
    const scale = rect.width ? this.view.w / rect.width : 1;
    this.view = {
      ...this.drag.view,
      x: this.drag.view.x - (e.clientX - this.drag.x) * scale,
      y: this.drag.view.y - (e.clientY - this.drag.y) * scale
    };
    this.applyView();
  }

  private select(node: LineageNode, g: SVGGElement): void {
    for (const el of Array.from(this.canvas.querySelectorAll('.jp-mod-selected'))) {
      el.classList.remove('jp-mod-selected');
    }
    g.classList.add('jp-mod-selected');
    this.describe(node);
  }

  private describe(node: LineageNode): void {
    clear(this.details);
    const body = h('tbody', {});
    for (const [k, v] of Object.entries(node.attrs)) {
      if (k === 'source' || v === null || v === undefined) {
        continue;
      }
      body.appendChild(h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, formatValue(v))));
    }
    this.details.appendChild(h('h3', {}, `${node.type}: ${node.label}`));
    this.details.appendChild(h('table', { class: 'nbmlops-table nbmlops-kv' }, body));
    const source = node.attrs['source'];
    if (typeof source === 'string') {
      this.details.appendChild(h('pre', { class: 'nbmlops-code' }, source));
    }
    const cellId = node.attrs['cell_id'];
    if (typeof cellId === 'string') {
      this.details.appendChild(
        h(
          'button',
          {
            class: 'jp-mod-styled nbmlops-button',
            onClick: () => {
              if (!this.ctx.jumpToCell(cellId)) {
                clear(this.banner);
                this.banner.appendChild(message('That cell is not in the active notebook.'));
              }
            }
          },
          'Go to cell'
        )
      );
    }
    if (node.type === 'artifact') {
      this.details.appendChild(
        h(
          'button',
          {
            class: 'jp-mod-styled nbmlops-button',
            onClick: () => this.showTarget(node.id)
          },
          'Center on this'
        )
      );
    }
  }

  private target: HTMLInputElement;
  private direction: HTMLSelectElement;
  private svg: SVGSVGElement | null = null;
  private view = { x: 0, y: 0, w: 100, h: 100 };
  private extent = { w: 100, h: 100 };
  private drag: { x: number; y: number; view: { x: number; y: number; w: number; h: number } } | null = null;
  private banner = h('div', { class: 'nbmlops-banner' });
  private canvas = h('div', { class: 'nbmlops-canvas' });
  private details = h('div', { class: 'nbmlops-details' });
}

/** Layers by longest path from the origins; within a layer, ordered by their parents' places. */
export function layout(graph: LineageGraph): Placed[] {
  const ids = graph.nodes.map(n => n.id);
  const preds = new Map<string, string[]>(ids.map(i => [i, []]));
  const succs = new Map<string, string[]>(ids.map(i => [i, []]));
  for (const e of graph.edges) {
    if (preds.has(e.target) && succs.has(e.source) && e.source !== e.target) {
      preds.get(e.target)!.push(e.source);
      succs.get(e.source)!.push(e.target);
    }
  }
  const indeg = new Map(ids.map(i => [i, preds.get(i)!.length]));
  const rank = new Map<string, number>(ids.map(i => [i, 0]));
  const queue = ids.filter(i => indeg.get(i) === 0);
  const seen = new Set<string>();
  while (queue.length) {
    const id = queue.shift()!;
    seen.add(id);
    for (const t of succs.get(id)!) {
      rank.set(t, Math.max(rank.get(t)!, rank.get(id)! + 1));
      indeg.set(t, indeg.get(t)! - 1);
      if (indeg.get(t) === 0) {
        queue.push(t);
      }
    }
  }
  // nodes on a cycle (should not happen): after their known parents
  for (const id of ids) {
    if (!seen.has(id)) {
      const ps = preds.get(id)!.filter(p => seen.has(p));
      rank.set(id, ps.length ? Math.max(...ps.map(p => rank.get(p)!)) + 1 : 0);
    }
  }
  const layers: string[][] = [];
  for (const id of ids) {
    const r = rank.get(id)!;
    (layers[r] = layers[r] || []).push(id);
  }
  const row = new Map<string, number>();
  const byId = new Map(graph.nodes.map(n => [n.id, n]));
  const placed: Placed[] = [];
  const widest = Math.max(...layers.map(l => (l ? l.length : 0)), 1);
  layers.forEach((layer, r) => {
    if (!layer) {
      return;
    }
    const key = (id: string): number => {
      const ps = preds.get(id)!.filter(p => row.has(p));
      return ps.length ? ps.reduce((a, p) => a + row.get(p)!, 0) / ps.length : 0;
    };
    layer.sort((a, b) => key(a) - key(b));
    const offset = ((widest - layer.length) * (NODE_W + GAP_X)) / 2;
    layer.forEach((id, i) => {
      row.set(id, i);
      placed.push({
        node: byId.get(id)!,
        x: offset + i * (NODE_W + GAP_X),
        y: r * (NODE_H + GAP_Y)
      });
    });
  });
  return placed;
}
