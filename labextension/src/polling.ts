/**
 * The one way a panel view polls the server: a lumino Poll that stands by while its view is
 * hidden (no requests for a tab nobody looks at) and never backs off on its own.
 */

import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

export function viewPoll(
  view: Widget,
  name: string,
  intervalMs: number,
  factory: () => Promise<void>,
  auto = false
): Poll {
  return new Poll({
    auto,
    factory,
    frequency: { interval: intervalMs, backoff: false },
    name: `nbmlops:${name}`,
    standby: () => (view.isVisible ? 'when-hidden' : true)
  });
}
