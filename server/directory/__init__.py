"""Directory accounts (Active Directory, OpenLDAP): config, the LDAP client, account views. No web, no SQL."""
