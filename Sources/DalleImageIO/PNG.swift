public enum DalleImageIO {}
