//! Default values of the config model (one place, used by the loader and by code builders).
