"""HTTP/RPC request and response models, defined once and used by the gateway and the owning service.

One module per service: ``meters`` (meter-sim), ``readings`` (aggregator), ``billing``, ``feasibility``.
"""
