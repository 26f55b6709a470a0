from __future__ import annotations

import views
from django.urls import path

urlpatterns = [
    path("", views.start_page, name="start"),
    path("apply", views.apply, name="apply"),
    path("apply/confirmation", views.confirmation, name="confirmation"),
    path("feedback", views.feedback, name="feedback"),
    path("feedback/thanks", views.thanks, name="thanks"),
]
