"""Host health and politeness: everything rpa knows and decides about the hosts it talks to.

- `health.HostHealth`: the one owner of host state for a run: gates, Retry-After cooldowns and
  breakers, kept in step with the queue's `hosts` table both ways (fleet-wide).
- `registry.HostGates`: each host's gate, made the first time a request goes there;
  `same_site` / `site_of`, the redirect policy's notion of a site.
- `rate.RateGate`: a host's rate cap in one process; `fleet.FleetRateGate`: the same rule
  across every process of a queue (slots in the database); `slots.TaskSlots`: which task holds
  which slot, for both.
- `politeness`: what arXiv's budget means for a run, said before it starts.
"""

from rpa.hosts.health import HostHealth
from rpa.hosts.registry import HostGate, HostGates, same_site, site_of

__all__ = ["HostGate", "HostGates", "HostHealth", "same_site", "site_of"]
