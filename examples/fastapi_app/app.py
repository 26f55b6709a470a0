"""Apply for a licence: a FastAPI service whose journey perf_sdk counts with no hand-written calls.

Run it against a local platform (`perf-sdk serve --token dev-token --port 8800` in another terminal):

    PERF_SDK_ENDPOINT=http://127.0.0.1:8800 PERF_SDK_TOKEN=dev-token PERF_SDK_SECRET=dev-secret-change-me-0123456789 uvicorn --app-dir examples/fastapi_app --factory app:create_app

then open http://127.0.0.1:8000/. The journey: start page -> /apply (the form; a start is counted) ->
/apply/confirmation (a completion is counted; refreshing it counts nothing) -> /feedback (a rating,
tied to the transaction just completed). Add --workers 4 in production: each worker has its own tracker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

import perf_sdk
from perf_sdk import AsyncTracker, Journey
from perf_sdk.integrations.asgi import PerfSdkMiddleware, record_satisfaction

SERVICE = "apply-for-a-licence"
JOURNEYS = [Journey("apply-for-a-licence", start="/apply", complete="/apply/confirmation")]

FORM = "<form method='post'><label for='name'>Full name</label><input id='name' name='name'><button>Submit application</button></form>"
FEEDBACK_FORM = (
    "<form method='post'><fieldset><legend>Overall, how did you feel about the service you received today?</legend>"
    + "".join(
        f"<input type='radio' id='r{n}' name='rating' value='{n}'><label for='r{n}'>{label}</label>"
        for n, label in [
            (5, "Very satisfied"),
            (4, "Satisfied"),
            (3, "Neither"),
            (2, "Dissatisfied"),
            (1, "Very dissatisfied"),
        ]
    )
    + "</fieldset><button>Send feedback</button></form>"
)


def page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = f"<!doctype html><html lang='en'><head><title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    return HTMLResponse(html, status_code=status_code)


async def form_field(request: Request, name: str) -> str:
    """One field of a urlencoded form (without the python-multipart dependency)."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    return fields.get(name, [""])[0].strip()


def create_app(tracker: perf_sdk.Tracker | None = None) -> FastAPI:
    """The application factory: ``tracker`` defaults to one configured by PERF_SDK_* variables."""
    async_tracker = AsyncTracker(tracker=tracker or perf_sdk.Tracker(service=SERVICE))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with async_tracker:  # workers started off the event loop; flushed and closed at shutdown
            yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(PerfSdkMiddleware, tracker=async_tracker, journeys=JOURNEYS)

    @app.get("/")
    async def start_page() -> Response:
        return page("Apply for a licence", "<p>It takes 5 minutes.</p><a href='/apply'>Start now</a>")

    @app.get("/apply")
    async def apply_form() -> Response:
        return page("Apply for a licence", FORM)

    @app.post("/apply")
    async def apply_submit(request: Request) -> Response:
        if not await form_field(request, "name"):
            return page("Apply for a licence", "<p class='error'>Enter your full name</p>" + FORM, 422)
        return RedirectResponse("/apply/confirmation", status_code=303)

    @app.get("/apply/confirmation")
    async def confirmation() -> Response:
        return page(
            "Application complete",
            "<p>We have your application.</p><a href='/feedback'>What did you think of this service?</a>",
        )

    @app.get("/feedback")
    async def feedback_form() -> Response:
        return page("Give feedback", FEEDBACK_FORM)

    @app.post("/feedback")
    async def feedback_submit(request: Request) -> Response:
        rating = await form_field(request, "rating")
        if rating not in {"1", "2", "3", "4", "5"}:
            return page("Give feedback", "<p class='error'>Choose a rating</p>" + FEEDBACK_FORM, 422)
        record_satisfaction(request, int(rating))
        return RedirectResponse("/feedback/thanks", status_code=303)

    @app.get("/feedback/thanks")
    async def thanks() -> Response:
        return page("Thank you for your feedback", "")

    return app
