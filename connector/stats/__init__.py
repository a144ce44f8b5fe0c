"""Statistics: working-day calendar, deadlines, the monthly report, the portal's index, the push."""
