"""The studies, one package each; see lookinside.study for the protocol they follow."""
