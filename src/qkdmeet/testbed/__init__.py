"""qkdmeet.testbed: the two-site network of the field test, in namespaces.

* :mod:`.netns` -- iproute2 wrappers; ``spawn(ns, argv)`` runs a process in a site
* :mod:`.topology` -- :class:`~.topology.Topology`: ``up()``/``down()``/``status()``,
  ``gateway_config()`` (file key store or ETSI 014 KME) and ``start_gateway()``
* :mod:`.wanrelay` -- the userspace WAN with loss, delay, jitter, reordering,
  duplication and corruption, changed at run time over a control socket
* :mod:`.probe` -- ICMP/UDP/TCP echo and UDP load probes run inside namespaces
* :mod:`.cli` -- ``qkdmeet testbed up [--gateways] | down | status | impair``
"""
