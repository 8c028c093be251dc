"""The admin's user and group pages, whose permission pickers name each permission by its
content type."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client, staff_user: Any) -> Client:
    client.force_login(staff_user)
    return client


def test_user_change_page_lists_permissions_by_content_type(admin_client: Client, django_user_model: Any) -> None:
    other = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)  # noqa: S106
    other.user_permissions.add(Permission.objects.get(codename="view_chatbot"))
    response = admin_client.get(reverse("admin:auth_user_change", args=[other.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "chat bot | Can view chat bot" in page
    # The user's own permission is the one selected.
    field = response.context["adminform"].form["user_permissions"]
    assert [str(pk) for pk in field.value()] == [str(Permission.objects.get(codename="view_chatbot").pk)]


def test_group_pages_list_permissions_by_content_type(admin_client: Client) -> None:
    group = Group.objects.create(name="operators")
    for url in (reverse("admin:auth_group_add"), reverse("admin:auth_group_change", args=[group.pk])):
        response = admin_client.get(url)
        assert response.status_code == 200
        assert "chat bot | Can view chat bot" in response.content.decode()
