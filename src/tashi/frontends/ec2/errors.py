"""EC2's errors: a code from AWS's list, its HTTP status, a message for the caller.

An ``Ec2Error`` is a ``TashiError`` whose ``code`` is the AWS error code itself
(``InvalidParameterValue``, ``InvalidInstanceID.NotFound``, ``SignatureDoesNotMatch``...), so
that botocore raises the ``ClientError`` its users expect and its retry logic behaves (it
retries ``RequestLimitExceeded`` and 5xx, never a 4xx). The body is EC2's::

    <Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors>
    <RequestID>…</RequestID></Response>
"""

from __future__ import annotations

from tashi.domain.errors import TashiError

#: The HTTP status AWS answers each error code with; a code not listed is a client error (400).
STATUS: dict[str, int] = {
    "AuthFailure": 401,
    "SignatureDoesNotMatch": 403,
    "RequestExpired": 400,
    "UnauthorizedOperation": 403,
    "OptInRequired": 403,
    "Blocked": 403,
    "InternalError": 500,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
    "Unavailable": 503,
    "RequestLimitExceeded": 503,
    "InsufficientInstanceCapacity": 500,
    "DryRunOperation": 412,
}


class Ec2Error(TashiError):
    """An error answered in EC2's format; ``code`` is AWS's code for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)
