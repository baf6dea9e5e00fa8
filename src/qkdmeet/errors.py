"""The exceptions qkdmeet raises on purpose: one tree, one branch per layer.

::

    QkdmeetError                      anything qkdmeet raises on purpose
    ├── ConfigError (ValueError)      a config file or option that cannot be used
    │   └── kme.tls.CertificateError (OSError)   TLS files that cannot be loaded
    ├── QkdError                      qkd: the link, its protocol, its kernels
    ├── KmeError                      kme: the key management entity
    │   ├── kme.store.StoreError          the store cannot serve a range
    │   ├── kme.peer.PeerError            the peer KME unreachable or refusing
    │   ├── kme.validation.Invalid (ValueError)   a request off its schema
    │   ├── kme.http.BadRequest           a request the server refuses (4xx)
    │   └── kme.client.EtsiError          an ETSI 014 request that failed
    │       ├── KmeUnauthorized               401
    │       ├── KmeBadRequest                 400
    │       │   └── KeysNotFound
    │       └── KmeUnavailable                503, or the KME unreachable
    ├── VpnError                      vpn: the gateways
    │   ├── vpn.memkeys.KeySupplyError    a key supply that cannot serve
    │   └── vpn.keygroups.NegotiationError   KME limits no tunnel can use
    ├── ConferenceError               conference: server, bot, browser app
    ├── TestbedError                  testbed: namespaces, WAN relay
    │   └── testbed.netns.NetnsError (RuntimeError)   an ``ip`` command failed
    └── DemoError                     demo: the run and its steps
        ├── demo.sites.PlanError (ValueError)        a demo option out of range
        ├── demo.processes.ProcessError (RuntimeError)   a child that failed
        └── demo.nsexec.NamespaceError (RuntimeError)    a call into a namespace

A class that was a ``ValueError`` or ``RuntimeError`` before the tree keeps it
as a second base (in brackets above), so existing ``except ValueError`` still
catch it. A misuse of an API (a wrong argument from code, not from a user)
stays a plain ``ValueError``/``TypeError``; a third-party error is translated
at the layer's boundary (``raise KmeUnavailable(...) from exc``).

An error a user can cause (a bad config file or option, a KME that is not
reachable) says what to do about it: its ``hint``, written after the message.
The ``qkdmeet`` command prints any :class:`QkdmeetError` that reaches it as one
line and exits with status 2 (:func:`qkdmeet.cli.main`).
"""

from __future__ import annotations

__all__ = [
    "ConferenceError",
    "ConfigError",
    "DemoError",
    "KmeError",
    "QkdError",
    "QkdmeetError",
    "TestbedError",
    "VpnError",
]


class QkdmeetError(Exception):
    """Base of every exception qkdmeet raises on purpose.

    ``hint``: what the user can do about it, shown after the message.
    """

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message}; {self.hint}" if self.hint else message


class ConfigError(QkdmeetError, ValueError):
    """A configuration file or option that cannot be used: the message names
    the file or option and the field, the hint what to change."""


class QkdError(QkdmeetError):
    """The QKD link (layer 1): its channels, protocol and kernels."""


class BlockError(QkdError):
    """What ends one QKD block without key (a malformed or forged message, a failed
    sift, reconciliation, verification or amplification): the block is aborted, the
    peer told, the link goes on."""


class KmeError(QkdmeetError):
    """Key management (layer 2): the store, the KME pair, the ETSI 014 API."""


class VpnError(QkdmeetError):
    """The one-time-pad gateways (layer 3) and their key supply."""


class ConferenceError(QkdmeetError):
    """The WebRTC conference: server, signalling, bot."""


class TestbedError(QkdmeetError):
    """The two-site testbed: network namespaces, the WAN relay."""

    __test__ = False  # a class, not a test, to pytest


class DemoError(QkdmeetError):
    """The demo cannot run or a step failed; the message says which and why."""
