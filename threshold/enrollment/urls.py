from django.urls import path

from threshold.enrollment import views

app_name = "enrollment"
urlpatterns = [
    path("enroll/<str:token>", views.enroll_page, name="enroll"),
    path("enroll/<str:token>/options", views.enroll_options, name="options"),
    path("enroll/<str:token>/result", views.enroll_result, name="result"),
]
