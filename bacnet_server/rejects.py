"""Malformed confirmed requests get the answer the standard asks for, not silence.

bacpypes3 drops a confirmed request it cannot decode without a word to the sender (its server
state machine hands its Abort up to the application instead of down to the network), and refuses
an undefined max-APDU code by raising in the middle of the stack. A client then waits out its
timeout and retries, and a technician sees a device that "does not answer" instead of one that
says what was wrong with the request. Here every confirmed request is decoded once before the
stack takes it; one that fails is answered with a Reject (missing required parameter, invalid
tag, unrecognized service, ...) or an Abort (an undefined max-APDU code), and goes no further.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bacpypes3.apdu import APDU, AbortPDU, AbortReason, APCISequence, ConfirmedRequestPDU, RejectPDU, RejectReason
from bacpypes3.app import Application
from bacpypes3.errors import RejectException
from bacpypes3.pdu import PDU

log = logging.getLogger(__name__)

CONFIRMED_REQUEST = 0
MAX_APDU_CODES = range(6)   # 50, 128, 206, 480, 1024, 1476 octets; 6-15 are reserved


def answer_for(pdu: PDU) -> APDU | None:
    """The Reject or Abort for a confirmed request that cannot be taken, or None (to the stack)."""
    if not pdu.pduData or pdu.pduData[0] >> 4 != CONFIRMED_REQUEST:
        return None
    try:
        # decoding consumes a PDU's data: this reads a copy, the stack gets the original
        apdu = APDU.decode(PDU(bytes(pdu.pduData), source=pdu.pduSource, destination=pdu.pduDestination))
    except Exception:  # noqa: BLE001 - no header to answer to: the stack drops it (and it is counted)
        return None
    if not isinstance(apdu, ConfirmedRequestPDU) or apdu.apduSeg:
        return None     # segmented requests: the stack's own state machine answers them
    if apdu.apduMaxResp not in MAX_APDU_CODES:
        return _addressed(AbortPDU(srv=True, invoke_id=apdu.apduInvokeID, reason=AbortReason.other), pdu)
    try:
        APCISequence.decode(apdu)
    except RejectException as err:
        reason = err.rejectReason
    except AttributeError as err:   # "x is a required element of ..."
        reason = RejectReason.missingRequiredParameter if "required" in str(err) else RejectReason.other
    except RuntimeError as err:     # "unrecognized service choice: 64"
        reason = RejectReason.unrecognizedService if "service choice" in str(err) else RejectReason.other
    except Exception:  # noqa: BLE001 - any other decoding failure of the request's parameters
        reason = RejectReason.other
    else:
        return None
    return _addressed(RejectPDU(invoke_id=apdu.apduInvokeID, reason=reason), pdu)


def _addressed(reply: APDU, request: PDU) -> APDU:
    reply.pduDestination = request.pduSource
    return reply


def answer_malformed_requests(app: Application) -> None:
    """Put the check in front of the application's service access point."""
    asap = app.asap
    confirmation: Callable[[PDU], Awaitable[None]] = asap.confirmation

    async def checked(pdu: PDU) -> None:
        reply = answer_for(pdu)
        if reply is None:
            await confirmation(pdu)
            return
        log.debug("answered a malformed request from %s with %r", pdu.pduSource, reply)
        await asap.request(reply)

    asap.confirmation = checked   # an instance's hook: the layer below calls it by name
