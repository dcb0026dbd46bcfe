/**
 * Tiny DOM helpers. Text always goes in as text nodes (never innerHTML): everything the store
 * holds (cell sources, names, paths, error messages) is user data and is shown as text.
 */

export type Child = Node | string | number | null | undefined | false;
export type Attrs = {
  [key: string]: string | number | boolean | null | undefined | ((event: any) => void);
};

function apply(el: Element, attrs: Attrs, children: Child[]): void {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (typeof value === 'function') {
      el.addEventListener(key.replace(/^on/, '').toLowerCase(), value);
    } else if (key === 'class') {
      el.setAttribute('class', String(value));
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    el.appendChild(
      typeof child === 'string' || typeof child === 'number'
        ? document.createTextNode(String(child))
        : child
    );
  }
}

/** An HTML element with attributes, listeners (`onClick: fn`) and text or element children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  apply(el, attrs, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element, built like `h`. */
export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag) as SVGElementTagNameMap[K];
  apply(el, attrs, children);
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) {
    el.removeChild(el.firstChild);
  }
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  }
  const m = Math.floor(seconds / 60);
  if (m < 60) {
    return `${m} min ${Math.round(seconds - m * 60)} s`;
  }
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function formatTime(epoch: number | null | undefined): string {
  if (epoch === null || epoch === undefined) {
    return '';
  }
  const d = new Date(epoch * 1000);
  const today = new Date();
  return d.toDateString() === today.toDateString()
    ? d.toLocaleTimeString()
    : d.toLocaleString();
}

export function formatValue(value: unknown): string {
  if (value === null || value === undefined) {
    return '–';
  }
  if (typeof value === 'number') {
    if (Number.isInteger(value)) {
      return String(value);
    }
    return Math.abs(value) >= 1e-3 && Math.abs(value) < 1e6
      ? String(Number(value.toPrecision(4)))
      : value.toExponential(3);
  }
  if (typeof value === 'string') {
    return value;
  }
  return JSON.stringify(value);
}

export function firstLine(source: string, width = 80): string {
  for (const raw of source.split('\n')) {
    const line = raw.trim();
    if (line && !line.startsWith('#')) {
      return line.length <= width ? line : line.slice(0, width - 1) + '…';
    }
  }
  return '(empty cell)';
}

export function basename(path: string): string {
  const parts = path.replace(/\/+$/, '').split('/');
  return parts[parts.length - 1] || path;
}

export function shortClass(name: string): string {
  const parts = name.split('.');
  return parts[parts.length - 1];
}

/** A message box for errors and empty states (role=alert for errors). */
export function message(text: string, kind: 'error' | 'info' = 'info'): HTMLElement {
  return h(
    'div',
    {
      class: `nbmlops-message nbmlops-message-${kind}`,
      role: kind === 'error' ? 'alert' : 'status'
    },
    text
  );
}

/** Replace what a view's banner shows: an error message, or nothing (null). */
export function showBanner(banner: HTMLElement, text: string | null): void {
  clear(banner);
  if (text) {
    banner.appendChild(message(text, 'error'));
  }
}
