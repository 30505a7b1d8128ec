// Web Push: push and notificationclick handlers (filled in by the notifications work).
