/**
 * The one place that talks to the nbmlops server extension: network failures and non-OK
 * answers become a typed `NbmlopsApiError` with a message a person can act on.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export class NbmlopsApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message);
    this.name = 'NbmlopsApiError';
  }
}

export type Query = {
  [key: string]: string | number | boolean | null | undefined;
};

const EXTENSION_MISSING =
  'The nbmlops server extension is not enabled. Run ' +
  '`jupyter server extension enable nbmlops.server` and restart JupyterLab.';

/** GET `/nbmlops/api/<endpoint>` with `query`; resolves to the parsed JSON answer. */
export async function requestAPI<T>(
  endpoint: string,
  query: Query = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') {
      params.set(key, String(value));
    }
  }
  const qs = params.toString();
  const url =
    URLExt.join(settings.baseUrl, 'nbmlops', 'api', endpoint) + (qs ? `?${qs}` : '');
  return send<T>(url, { method: 'GET', cache: 'no-store' }, settings);
}

/**
 * POST a JSON body to `/nbmlops/api/<endpoint>` (an action). `ServerConnection.makeRequest`
 * adds Jupyter's XSRF header from the `_xsrf` cookie, as for every Jupyter POST.
 */
export async function postAPI<T>(
  endpoint: string,
  body: unknown = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'nbmlops', 'api', endpoint);
  return send<T>(
    url,
    {
      method: 'POST',
      cache: 'no-store',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body)
    },
    settings
  );
}

async function send<T>(
  url: string,
  init: RequestInit,
  settings: ServerConnection.ISettings
): Promise<T> {
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new NbmlopsApiError(
      0,
      'network',
      `The Jupyter server cannot be reached (${String(error)}).`
    );
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (data && typeof data.message === 'string' && typeof data.code === 'string') {
      throw new NbmlopsApiError(response.status, data.code, data.message);
    }
    if (response.status === 404) {
      throw new NbmlopsApiError(404, 'extension_missing', EXTENSION_MISSING);
    }
    const message =
      data && typeof data.message === 'string'
        ? data.message
        : `${response.status} ${response.statusText}`;
    throw new NbmlopsApiError(response.status, 'http_error', message);
  }
  return data as T;
}

/** A path segment for a run id (ids are hex, but never trust a value into a URL). */
export function segment(value: string): string {
  return encodeURIComponent(value);
}

/**
 * While the store is missing or locked, views ask the quiet `status` endpoint (always 200)
 * instead of repeating data requests that fail: no error spam in the server log or the
 * browser console, and the view recovers on the first `ok`.
 */
export class StoreGate {
  /** The last store problem, or null when the store answered. */
  problem: string | null = null;

  /** Null when data requests may go ahead; else the message to show. */
  async check(path: string | null): Promise<string | null> {
    if (this.problem === null) {
      return null;
    }
    const status = await requestAPI<{ ok: boolean; message: string | null }>('status', {
      path
    });
    this.problem = status.ok ? null : status.message ?? 'The nbmlops store cannot be used.';
    return this.problem;
  }

  /** Remember a failed data request if the store caused it; returns the message to show. */
  note(error: unknown): string {
    if (error instanceof NbmlopsApiError) {
      if (error.code.startsWith('store_')) {
        this.problem = error.message;
      }
      return error.message;
    }
    return `Unexpected error: ${String(error)}`;
  }
}
