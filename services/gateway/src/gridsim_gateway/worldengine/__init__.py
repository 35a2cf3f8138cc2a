"""DEG World Engine compatibility: the ``/meter-data-simulator`` API as a translation layer onto gridsim.

``install(app, settings)`` mounts it on the gateway. Modules: ``strapi`` (query parameters), ``envelope``
(success and error envelopes), ``entities`` (the mapping onto gridsim's tables), ``sqlquery`` (filters,
sorts, pages, populate), ``links`` (one-to-one meter ↔ household links), route modules ``grid``,
``meters``, ``households``, ``trades``, ``readings`` (datasets and grid loads), ``webhook`` (overload alert).
"""

from gridsim_gateway.worldengine.app import PREFIXES, create_world_engine, install

__all__ = ["PREFIXES", "create_world_engine", "install"]
