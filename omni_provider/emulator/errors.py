"""The error type every handler raises, rendered as Omni's documented ``{"error", "message"}`` body."""

from __future__ import annotations

from http import HTTPStatus


class ApiError(Exception):
    """An HTTP error response; ``error`` defaults to the status's reason phrase."""

    def __init__(self, status: int, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error if error is not None else HTTPStatus(status).phrase

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str = "User not found") -> ApiError:
    return ApiError(404, message)
