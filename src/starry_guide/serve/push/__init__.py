"""Nudges that reach a phone in a pocket: standard Web Push (RFC 8030 delivery, RFC 8291
``aes128gcm`` encryption, RFC 8292 VAPID) sent by the server when a station's plan holds a
clear window tonight.

``vapid``: the server's VAPID key pair; ``endpoints``: which push-service URLs the server
will ever post to (SSRF guard); ``subscriptions``: the subscriptions and the ledger of
pushes in the serving store; ``decider``: the pure rules (which window is due for which
subscription, quiet hours, the payload and headers); ``sender``: encryption and delivery;
``nudger``: the decider's passes, run by ``starry serve`` and ``starry nudge --once``.
"""
