"""Layer 2: key management entities serving ETSI GS QKD 014.

* :mod:`~qkdmeet.kme.store`: durable SQLite (WAL) key store of one KME;
* :mod:`~qkdmeet.kme.sink`: the :class:`~qkdmeet.qkd.sink.KeySink` that feeds it;
* :mod:`~qkdmeet.kme.server`: the KME over mutual TLS, composing one module per job:
  :mod:`~qkdmeet.kme.access` (certificate roles, audit), :mod:`~qkdmeet.kme.etsi_routes`
  (ETSI 014, OpenAPI), :mod:`~qkdmeet.kme.metrics_routes` (JSON and Prometheus text),
  :mod:`~qkdmeet.kme.peer_routes` (reserve, hold), :mod:`~qkdmeet.kme.admin_routes`
  (the QKD link end); :mod:`~qkdmeet.kme.http` is what they share;
* :mod:`~qkdmeet.kme.peer`: KME-to-KME allocation (one authority, shared pool);
* :mod:`~qkdmeet.kme.tls`, :mod:`~qkdmeet.kme.pki`: TLS contexts, certificates;
* :mod:`~qkdmeet.kme.client`: :class:`EtsiClient` and :class:`KeyPrefetcher` for SAEs;
* :mod:`~qkdmeet.kme.config`, :mod:`~qkdmeet.kme.pair`, :mod:`~qkdmeet.kme.cli`,
  :mod:`~qkdmeet.kme.simfeed` (simulated link feed); the benchmark is
  :mod:`qkdmeet.bench.kme` (``qkdmeet bench kme``).
"""
