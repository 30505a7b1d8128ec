// Offline app shell and last-known-state cache (filled in by the phone-app work).
