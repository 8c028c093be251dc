# One date format in the whole admin, with the time zone (settings.TIME_ZONE); the API
# writes ISO 8601 (DRF), untouched by these.
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
